// Package results owns the layout of one evaluation run's directory:
//
//	results/<UTC time>-<scenario>/
//	  provenance.json   what produced the run (commit, kernel, hashes, host)
//	  scenario.toml     the scenario file as it was run
//	  plan.json         the ordered trials
//	  trials/<id>/      one trial's raw guest output plus outcome.json
//	  summary.csv, report.md, figures/   derived, rebuilt by `agentbench figures`
//
// A trial directory appears only complete: it is written under a temporary
// name and renamed into place, so an interrupted run can be resumed.
package results

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/plan"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// Files and directories of a run.
const (
	ProvenanceFile = "provenance.json"
	ScenarioFile   = "scenario.toml"
	PlanFile       = "plan.json"
	TrialsDir      = "trials"
	OutcomeFile    = "outcome.json"
	ConsoleFile    = "console.log"
	SummaryFile    = "summary.csv"
	ReportFile     = "report.md"
	FiguresDir     = "figures"
)

// Trial statuses.
const (
	StatusOK      = "ok"      // the guest ran the trial and its manifest says ok
	StatusFailed  = "failed"  // failed twice (or could not be read)
	StatusSkipped = "skipped" // not attempted, e.g. its configuration's binary is absent
)

// Outcome is the host's record of one trial, written next to its raw data.
type Outcome struct {
	ID       string    `json:"id"`
	Status   string    `json:"status"`
	Reason   string    `json:"reason,omitempty"` // why failed or skipped
	Attempts []Attempt `json:"attempts,omitempty"`
}

// Attempt is one guest boot for a trial.
type Attempt struct {
	Started       time.Time `json:"started"`
	Accel         string    `json:"accel,omitempty"`
	ExitCode      int       `json:"exit_code"`
	BootToCommand string    `json:"boot_to_command,omitempty"`
	Run           string    `json:"run,omitempty"`
	Error         string    `json:"error,omitempty"`
	// HostLoad1 is the host's 1-minute load average when the attempt
	// started: guests share the host, so this says how noisy it was.
	HostLoad1 float64 `json:"host_load1,omitempty"`
	// VCPURunMs and VCPUWaitMs are how long the guest's vCPU threads ran
	// on a host CPU and waited for one (runnable, not running) while the
	// job ran: the host's interference, which the guest cannot see.
	VCPURunMs  float64 `json:"vcpu_run_ms,omitempty"`
	VCPUWaitMs float64 `json:"vcpu_wait_ms,omitempty"`
	// GitCommit is the code that ran the attempt (a resumed run can mix
	// commits); GitDirty says its work tree had uncommitted changes.
	GitCommit string `json:"git_commit,omitempty"`
	GitDirty  bool   `json:"git_dirty,omitempty"`
}

// VCPUWaitShare is the fraction of the vCPUs' runnable time they waited
// for a host CPU; ok is false when the attempt did not measure it.
func (a Attempt) VCPUWaitShare() (share float64, ok bool) {
	if a.VCPURunMs+a.VCPUWaitMs <= 0 {
		return 0, false
	}
	return a.VCPUWaitMs / (a.VCPURunMs + a.VCPUWaitMs), true
}

// Run is an open results directory.
type Run struct {
	Dir string
}

// DirName is "<UTC time>-<scenario>", sortable by time.
func DirName(now time.Time, scenario string) string {
	return now.UTC().Format("20060102T150405Z") + "-" + scenario
}

// Create makes a new run directory under base.
func Create(base, scenario string, now time.Time) (*Run, error) {
	dir := filepath.Join(base, DirName(now, scenario))
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("results directory %s already exists (wait a second or use --resume %s)", dir, dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, TrialsDir), 0o755); err != nil {
		return nil, err
	}
	return &Run{Dir: dir}, nil
}

// Open opens an existing run directory, checking it looks like one.
func Open(dir string) (*Run, error) {
	for _, f := range []string{ScenarioFile, PlanFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return nil, fmt.Errorf("%s is not a results directory (no %s): pass a directory made by agentbench eval", dir, f)
		}
	}
	return &Run{Dir: dir}, nil
}

// TrialDir is where a trial's raw data lives.
func (r *Run) TrialDir(id string) string { return filepath.Join(r.Dir, TrialsDir, id) }

// Outcome reads a trial's outcome; ok is false when the trial has no
// finished directory.
func (r *Run) Outcome(id string) (Outcome, bool, error) {
	var o Outcome
	b, err := os.ReadFile(filepath.Join(r.TrialDir(id), OutcomeFile))
	if errors.Is(err, os.ErrNotExist) {
		return o, false, nil
	}
	if err != nil {
		return o, false, err
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, false, fmt.Errorf("%s: %v", filepath.Join(r.TrialDir(id), OutcomeFile), err)
	}
	return o, true, nil
}

// Done reports whether a trial finished successfully; resume skips those.
func (r *Run) Done(id string) bool {
	o, ok, err := r.Outcome(id)
	return ok && err == nil && o.Status == StatusOK
}

// Staging returns a fresh temporary directory inside the run for one
// attempt; Commit renames it into place.
func (r *Run) Staging(id string) (string, error) {
	return os.MkdirTemp(filepath.Join(r.Dir, TrialsDir), ".staging-"+id+"-")
}

// Commit writes the outcome into the staged directory and renames it to the
// trial's directory, replacing an earlier failed or skipped result.
func (r *Run) Commit(staged string, o Outcome) error {
	if err := fsutil.WriteJSON(filepath.Join(staged, OutcomeFile), o); err != nil {
		return err
	}
	dst := r.TrialDir(o.ID)
	if _, err := os.Stat(dst); err == nil {
		old := dst + ".old"
		os.RemoveAll(old)
		if err := os.Rename(dst, old); err != nil {
			return err
		}
		defer os.RemoveAll(old)
	}
	return os.Rename(staged, dst)
}

// CleanStaging removes staging directories left by an interrupted run.
func (r *Run) CleanStaging() error {
	ents, err := os.ReadDir(filepath.Join(r.Dir, TrialsDir))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".staging-") || strings.HasSuffix(e.Name(), ".old") {
			if err := os.RemoveAll(filepath.Join(r.Dir, TrialsDir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// WritePlan stores the plan.
func (r *Run) WritePlan(p *plan.Plan) error {
	return fsutil.WriteJSON(filepath.Join(r.Dir, PlanFile), p)
}

// ReadPlan loads the stored plan.
func (r *Run) ReadPlan() (*plan.Plan, error) {
	var p plan.Plan
	b, err := os.ReadFile(filepath.Join(r.Dir, PlanFile))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%s: %v", filepath.Join(r.Dir, PlanFile), err)
	}
	return &p, nil
}

// TrialIDs lists finished trial directories in sorted order.
func (r *Run) TrialIDs() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(r.Dir, TrialsDir))
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && !strings.HasSuffix(e.Name(), ".old") {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// RawDir returns the directory holding a trial's guest output (the layout
// of harness/trial): the guest writes it under /out/trial, so it is the
// "trial" subdirectory when present.
func RawDir(trialDir string) string {
	sub := filepath.Join(trialDir, "trial")
	if _, err := os.Stat(filepath.Join(sub, trial.ManifestFile)); err == nil {
		return sub
	}
	return trialDir
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}
