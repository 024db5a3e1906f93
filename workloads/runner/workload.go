// Package runner runs one trial inside a guest (agentwork trial): it builds
// the cgroup tree, starts the scheduler and daemon when asked, runs every
// workload as its own process in its own step cgroup, samples the cgroups
// and writes the trial.Raw layout. It also holds the in-process bodies of
// the workloads that those processes execute.
package runner

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
	"github.com/agentcgroup/agentcgroup/workloads/kinds"
	"github.com/agentcgroup/agentcgroup/workloads/latency"
)

// Self is the agentwork binary that child processes re-execute.
func Self() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot find own executable to spawn children: %w", err)
	}
	return exe, nil
}

// VictimRun says how to run one victim in this process.
type VictimRun struct {
	Victim trial.Victim
	Seed   uint64 // already specific to this victim
	// Ready is called once the victim has prepared (e.g. faulted in its
	// working set) and returns the measured phase's start: the intended
	// start of its first request and the base of its histogram log.
	Ready func() (time.Time, error)
	Dur   time.Duration
	Hlog  string // interval log path
	// Mount and the victim's session place the step cgroups a
	// session-shaped victim makes; empty Mount runs its steps as plain
	// child processes (standalone use).
	Mount string
	// DaemonSocket, when set, creates each such step through the
	// daemon's API so it gets the step class and policy.
	DaemonSocket string
	// Stack and Policy are the trial's configuration and policy: such
	// steps get the budgets it does not manage and, with a static policy
	// source, their step_policy entry.
	Stack  stack.Config
	Policy string

	Start time.Time // set from Ready
}

// RunVictim runs a victim to completion and returns its result; the
// histogram log is written to r.Hlog.
func RunVictim(ctx context.Context, r VictimRun) trial.WorkloadResult {
	res := trial.WorkloadResult{Name: r.Victim.Name, Kind: r.Victim.Kind}
	// a registered kind's parameters are decoded before it gets ready
	reg := kinds.Lookup(r.Victim.Kind)
	var regParams any
	if reg != nil && reg.Victim {
		var err error
		if regParams, err = reg.VictimParams(r.Victim); err != nil {
			res.Error = err.Error()
			return res
		}
	}
	var state any
	if regParams != nil && reg.PrepareVictim != nil {
		st, closeFn, err := reg.PrepareVictim(regParams)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		defer closeFn()
		state = st
	}
	start, err := r.Ready()
	if err != nil {
		res.Error = err.Error()
		return res
	}
	r.Start = start
	var buf bytes.Buffer
	rec, err := latency.New(&buf, r.Start, latency.DefaultInterval,
		fmt.Sprintf("victim %s kind %s seed %d unit us", r.Victim.Name, r.Victim.Kind, r.Seed))
	if err != nil {
		res.Error = err.Error()
		return res
	}
	var allocBuf bytes.Buffer
	var alloc *latency.Recorder
	if regParams != nil && reg.AllocProbe != nil {
		if b := reg.AllocProbe(regParams); b > 0 {
			if alloc, err = latency.New(&allocBuf, r.Start, latency.DefaultInterval,
				fmt.Sprintf("victim %s allocation probe %d bytes seed %d unit us", r.Victim.Name, b, r.Seed)); err != nil {
				res.Error = err.Error()
				return res
			}
		}
	}
	kr := kinds.VictimRun{Victim: r.Victim, Params: regParams, Seed: r.Seed,
		Start: r.Start, Dur: r.Dur, Rec: rec, Alloc: alloc, State: state, Log: os.Stderr}
	switch {
	case regParams == nil:
		res.Error = fmt.Sprintf("unknown victim kind %q", r.Victim.Kind)
	case reg.Session != nil:
		nominal, err := runSession(ctx, r, reg, kr)
		res.Nominal = trial.Duration(nominal)
		if err != nil {
			res.Error = err.Error()
		}
		// elapsed is the session's makespan, from its own (delayed) start
		if reg.Session.Delay != nil {
			r.Start = r.Start.Add(reg.Session.Delay(regParams))
		}
	default:
		if err := reg.RunVictim(ctx, kr); err != nil {
			res.Error = err.Error()
		}
	}
	end := time.Now()
	if err := rec.Close(end); err != nil && res.Error == "" {
		res.Error = err.Error()
	}
	res.Count, res.Failed = rec.Count(), rec.Failed()
	res.Elapsed = trial.Duration(end.Sub(r.Start))
	if alloc != nil {
		if err := alloc.Close(end); err != nil && res.Error == "" {
			res.Error = err.Error()
		}
		res.AllocCount = alloc.Count()
		if err := fsutil.WriteFile(AllocLogPath(r.Hlog), allocBuf.Bytes()); err != nil && res.Error == "" {
			res.Error = err.Error()
		}
	}
	if err := fsutil.WriteFile(r.Hlog, buf.Bytes()); err != nil && res.Error == "" {
		res.Error = err.Error()
	}
	return res
}

// AllocLogPath is where a victim whose latency log is hlog writes its
// allocation-latency log (trial.AllocHistogramPath beside HistogramPath).
func AllocLogPath(hlog string) string {
	return strings.TrimSuffix(hlog, trial.HistogramExt) + ".alloc" + trial.HistogramExt
}

// runSession runs a session-shaped victim. In a trial (r.Mount set) its
// steps are made under its session as the trial's configuration makes
// steps (see buildTree); standalone they run without cgroups of their own.
func runSession(ctx context.Context, r VictimRun, reg *kinds.Kind, kr kinds.VictimRun) (time.Duration, error) {
	sr := kinds.SessionRun{VictimRun: kr}
	if r.Hlog != "" {
		sr.StepsLog = TraceStepsPath(r.Hlog)
	}
	if r.Mount != "" {
		var static *staticPolicy
		if r.Stack.Policy == stack.PolicyStatic {
			var err error
			if static, err = openStaticPolicy(r.Policy); err != nil {
				return 0, err
			}
			defer static.close()
		}
		sess := filepath.Join(r.Mount, trial.SessionPath(r.Victim.Session))
		sr.MakeStep = func(id, class string, budget trial.Budget, argv []string) (cgroupfs.Cgroup, error) {
			if r.DaemonSocket != "" {
				if _, err := api.NewClient(r.DaemonSocket).CreateStep(api.StepRequest{
					Session: r.Victim.Session, Step: id, Class: DaemonClass(class), Argv: argv}); err != nil {
					return cgroupfs.Cgroup{}, fmt.Errorf("daemon: create step %s: %w", id, err)
				}
			}
			cg, err := cgroupfs.Mkdir(filepath.Join(sess, cgroupfs.StepPrefix+id))
			if err != nil {
				return cg, err
			}
			if err := ApplyBudget(cg, staticBudget(r.Stack, budget)); err != nil {
				return cg, err
			}
			if static != nil {
				if err := static.write(cg, class); err != nil {
					return cg, err
				}
			}
			return cg, nil
		}
	}
	return reg.Session.Run(ctx, sr)
}

// TraceStepsPath is where a session-shaped victim whose latency log is
// hlog writes its steps log: one JSON line per step it made, then one for
// the session.
func TraceStepsPath(hlog string) string {
	return hlog[:len(hlog)-len(filepath.Ext(hlog))] + ".steps.jsonl"
}

// TraceDriverStep is the step that holds a session-shaped victim's driver
// process: a cgroup with children may not hold processes itself.
func TraceDriverStep(victimName string) string { return victimName + "-driver" }

// RunNeighbour runs a neighbour until ctx ends.
func RunNeighbour(ctx context.Context, n trial.Neighbour, seed uint64) trial.WorkloadResult {
	res := trial.WorkloadResult{Name: n.Name, Kind: n.Kind}
	start := time.Now()
	var st kinds.Stats
	reg := kinds.Lookup(n.Kind)
	if reg == nil || !reg.Neighbour {
		res.Error = fmt.Sprintf("unknown neighbour kind %q", n.Kind)
	} else if p, err := reg.NeighbourParams(n); err != nil {
		res.Error = err.Error()
	} else if st, err = reg.RunNeighbour(ctx, kinds.NeighbourRun{Neighbour: n, Params: p, Seed: seed, Log: os.Stderr}); err != nil {
		res.Error = err.Error()
	}
	res.Count, res.Failed = st.Ops, st.Failed
	res.Elapsed = trial.Duration(time.Since(start))
	return res
}

// ApplyBudget writes a budget's non-zero knobs.
func ApplyBudget(cg cgroupfs.Cgroup, b trial.Budget) error {
	if b.CPUWeight != 0 {
		if err := cg.Write("cpu.weight", strconv.Itoa(b.CPUWeight)); err != nil {
			return err
		}
	}
	if b.CPUMax != "" {
		if err := cg.Write("cpu.max", b.CPUMax); err != nil {
			return err
		}
	}
	if b.MemoryMax != 0 {
		if err := cg.WriteLimit("memory.max", uint64(b.MemoryMax)); err != nil {
			return err
		}
	}
	if b.MemoryHigh != 0 {
		if err := cg.WriteLimit("memory.high", uint64(b.MemoryHigh)); err != nil {
			return err
		}
	}
	if b.PidsMax != 0 {
		if err := cg.Write("pids.max", strconv.Itoa(b.PidsMax)); err != nil {
			return err
		}
	}
	return nil
}

// MergeLog reads an interval log and returns the merged histogram.
func MergeLog(path string) (*hdrhistogram.Histogram, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rd := hdrhistogram.NewHistogramLogReader(bytes.NewReader(b))
	h := trial.NewLatencyHistogram()
	for {
		x, err := rd.NextIntervalHistogram()
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		if x == nil {
			return h, nil
		}
		h.Merge(x)
	}
}
