// Package runner executes a planned evaluation: one fresh guest per trial,
// a retry for a failed trial, atomic per-trial results, resume, and a
// progress line with an ETA.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/lab"
	"github.com/agentcgroup/agentcgroup/harness/plan"
	"github.com/agentcgroup/agentcgroup/harness/results"
	"github.com/agentcgroup/agentcgroup/harness/scenario"
	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// Guest paths of the trial's spec and output.
const (
	GuestSpec = "/run/trial.json"
	GuestOut  = "/out/trial"
)

// GuestOutputFile holds the guest command's stdout and stderr per attempt.
const GuestOutputFile = "guest-output.log"

// Execer boots one guest; lab.Exec in production, a fake in tests.
type Execer func(ctx context.Context, j lab.Job) (*lab.Result, error)

// Options configure a run.
type Options struct {
	Exec Execer
	// Progress receives one line per finished trial (done/total, ETA).
	Progress io.Writer
	// Unavailable maps a configuration to why it cannot run in this
	// build (e.g. its binary is absent); its trials are skipped and
	// labelled, the rest go on.
	Unavailable map[string]string
	// Provenance is updated (accelerators, seeds) and rewritten as
	// trials finish.
	Provenance *results.Provenance
	// Retries after a failed attempt (default 1).
	Retries int
	Now     func() time.Time
}

// Summary counts what a Run call did.
type Summary struct {
	Ran, OK, Failed, Skipped, AlreadyDone int
}

// Run executes every trial of p not yet finished in run.
func Run(ctx context.Context, s *scenario.Scenario, p *plan.Plan, run *results.Run, o Options) (Summary, error) {
	var sum Summary
	if o.Exec == nil {
		o.Exec = lab.Exec
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	retries := o.Retries
	if retries == 0 {
		retries = 1
	}
	if err := run.CleanStaging(); err != nil {
		return sum, err
	}
	var todo []plan.Trial
	for _, t := range p.Trials {
		if o.Provenance != nil {
			o.Provenance.TrialSeeds[t.ID] = t.Spec.Seed
		}
		if run.Done(t.ID) {
			sum.AlreadyDone++
			continue
		}
		todo = append(todo, t)
	}
	total := len(p.Trials)
	done := sum.AlreadyDone
	var spent time.Duration
	booted := 0
	for _, t := range todo {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		if why, ok := o.Unavailable[t.Config]; ok {
			staged, err := run.Staging(t.ID)
			if err != nil {
				return sum, err
			}
			if err := run.Commit(staged, results.Outcome{ID: t.ID, Status: results.StatusSkipped, Reason: why}); err != nil {
				return sum, err
			}
			sum.Skipped++
			done++
			fmt.Fprintf(o.Progress, "[%*d/%d] %-28s skipped: %s\n", width(total), done, total, t.ID, why)
			continue
		}
		start := o.Now()
		out, err := runTrial(ctx, s, run, t, o, retries)
		if err != nil {
			return sum, err // interrupted or the results directory is unusable
		}
		took := o.Now().Sub(start)
		spent += took
		booted++
		sum.Ran++
		done++
		if out.Status == results.StatusOK {
			sum.OK++
		} else {
			sum.Failed++
		}
		if o.Provenance != nil {
			for _, a := range out.Attempts {
				o.Provenance.AddAccel(a.Accel)
			}
			if err := run.WriteProvenance(o.Provenance); err != nil {
				return sum, err
			}
		}
		remaining := 0
		for _, u := range todo[sum.Ran+sum.Skipped:] {
			if _, skip := o.Unavailable[u.Config]; !skip {
				remaining++
			}
		}
		eta := time.Duration(float64(spent) / float64(booted) * float64(remaining)).Round(time.Second)
		status := out.Status
		if out.Status != results.StatusOK {
			status += ": " + firstLine(out.Reason)
		}
		fmt.Fprintf(o.Progress, "[%*d/%d] %-28s %s (%.1fs, %d attempt(s)) ETA %v\n",
			width(total), done, total, t.ID, status, took.Seconds(), len(out.Attempts), eta)
	}
	return sum, nil
}

// runTrial boots the trial, retrying a failed attempt, and commits the
// last attempt's directory with its outcome.
func runTrial(ctx context.Context, s *scenario.Scenario, run *results.Run, t plan.Trial, o Options, retries int) (results.Outcome, error) {
	out := results.Outcome{ID: t.ID}
	specJSON, err := json.MarshalIndent(t.Spec, "", "  ")
	if err != nil {
		return out, err
	}
	var staged string
	for attempt := 0; attempt <= retries; attempt++ {
		if staged != "" {
			os.RemoveAll(staged) // keep only the last attempt's files
		}
		staged, err = run.Staging(t.ID)
		if err != nil {
			return out, err
		}
		a, ok := attemptOnce(ctx, s, t, specJSON, staged, o)
		// Name files by where they end up, not the staging directory.
		a.Error = strings.ReplaceAll(a.Error, staged, filepath.Join(results.TrialsDir, t.ID))
		out.Attempts = append(out.Attempts, a)
		if ctx.Err() != nil {
			os.RemoveAll(staged)
			return out, ctx.Err()
		}
		if ok {
			out.Status = results.StatusOK
			out.Reason = ""
			break
		}
		out.Status = results.StatusFailed
		out.Reason = a.Error
	}
	if err := run.Commit(staged, out); err != nil {
		return out, err
	}
	return out, nil
}

func attemptOnce(ctx context.Context, s *scenario.Scenario, t plan.Trial, specJSON []byte, staged string, o Options) (results.Attempt, bool) {
	a := results.Attempt{Started: o.Now().UTC(), HostLoad1: results.HostLoad1()}
	if o.Provenance != nil {
		a.GitCommit, a.GitDirty = o.Provenance.Commit()
	}
	logf, err := os.Create(filepath.Join(staged, GuestOutputFile))
	if err != nil {
		a.Error = err.Error()
		return a, false
	}
	defer logf.Close()
	res, err := o.Exec(ctx, lab.Job{
		Kernel:     s.Kernel,
		MemMB:      s.Guest.MemMB,
		CPUs:       s.Guest.CPUs,
		Argv:       []string{"agentwork", "trial", "--spec", GuestSpec, "--out", GuestOut},
		Files:      map[string][]byte{GuestSpec: specJSON},
		OutDir:     staged,
		Timeout:    s.Timing.Timeout,
		Stdout:     logf,
		ConsoleLog: filepath.Join(staged, results.ConsoleFile),
		Packages:   s.Guest.Packages,
	})
	if res != nil {
		a.Accel, a.ExitCode = res.Accel, res.ExitCode
		a.BootToCommand, a.Run = res.BootToCommand.Round(time.Millisecond).String(), res.Run.Round(time.Millisecond).String()
		a.VCPURunMs = float64(res.VCPU.Run.Microseconds()) / 1000
		a.VCPUWaitMs = float64(res.VCPU.Wait.Microseconds()) / 1000
	}
	switch {
	case err != nil:
		a.Error = "guest: " + err.Error()
		return a, false
	case res.ExitCode != 0:
		a.Error = fmt.Sprintf("agentwork trial exited %d (see %s)", res.ExitCode, GuestOutputFile)
	}
	raw, lerr := trial.Load(results.RawDir(staged))
	switch {
	case lerr != nil:
		a.Error = joinErr(a.Error, "raw output: "+lerr.Error())
		return a, false
	case !raw.Manifest.OK:
		a.Error = joinErr(a.Error, "guest reported: "+strings.Join(raw.Manifest.Errors, "; "))
		return a, false
	case raw.Manifest.Spec.ID != t.ID:
		a.Error = joinErr(a.Error, fmt.Sprintf("output is for trial %q", raw.Manifest.Spec.ID))
		return a, false
	}
	return a, a.Error == ""
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	if len(l) > 160 {
		l = l[:160] + "…"
	}
	return l
}

func width(n int) int { return len(fmt.Sprint(n)) }

// ErrPlanChanged means a resumed run's stored plan no longer matches what
// its stored scenario expands to (the harness changed in between).
var ErrPlanChanged = errors.New("the stored plan differs from the one this build derives from the stored scenario")

// SamePlan compares trial ids and order.
func SamePlan(a, b *plan.Plan) error {
	if len(a.Trials) != len(b.Trials) {
		return fmt.Errorf("%w: %d vs %d trials", ErrPlanChanged, len(a.Trials), len(b.Trials))
	}
	for i := range a.Trials {
		if a.Trials[i].ID != b.Trials[i].ID || a.Trials[i].Spec.Seed != b.Trials[i].Spec.Seed {
			return fmt.Errorf("%w: trial %d is %s, was %s", ErrPlanChanged, i, b.Trials[i].ID, a.Trials[i].ID)
		}
	}
	return nil
}
