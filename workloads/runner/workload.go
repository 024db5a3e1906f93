// Package runner runs one trial inside a guest (agentwork trial): it builds
// the cgroup tree, starts the scheduler and daemon when asked, runs every
// workload as its own process in its own step cgroup, samples the cgroups
// and writes the trial.Raw layout. It also holds the in-process bodies of
// the workloads that those processes execute.
package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
	"github.com/agentcgroup/agentcgroup/workloads/kinds"
	"github.com/agentcgroup/agentcgroup/workloads/latency"
	"github.com/agentcgroup/agentcgroup/workloads/load"
	"github.com/agentcgroup/agentcgroup/workloads/neighbour"
	"github.com/agentcgroup/agentcgroup/workloads/trace"
	"github.com/agentcgroup/agentcgroup/workloads/traces"
	"github.com/agentcgroup/agentcgroup/workloads/victim"
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
	// Mount and session place a trace victim's per-step cgroups; empty
	// Mount runs steps as plain child processes (standalone use).
	Mount string
	// DaemonSocket, when set, creates each trace step through the
	// daemon's API so it gets the step class and policy.
	DaemonSocket string
	// Stack and Policy are the trial's configuration and policy: trace
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
	switch r.Victim.Kind {
	case trial.VictimTrace:
		nominal, err := runTrace(ctx, r, rec)
		res.Nominal = trial.Duration(nominal)
		if err != nil {
			res.Error = err.Error()
		}
		// elapsed is the session's makespan, from its own (delayed) start
		r.Start = r.Start.Add(r.Victim.Trace.Delay.D())
	default:
		if regParams == nil {
			res.Error = fmt.Sprintf("unknown victim kind %q", r.Victim.Kind)
			break
		}
		err := reg.RunVictim(ctx, kinds.VictimRun{Victim: r.Victim, Params: regParams, Seed: r.Seed,
			Start: r.Start, Dur: r.Dur, Rec: rec, Alloc: alloc, State: state, Log: os.Stderr})
		if err != nil {
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

// LoadTrace finds a trace by embedded name or file path.
func LoadTrace(name string) (*trace.Trace, error) {
	if filepath.Ext(name) == ".json" {
		return trace.Read(name)
	}
	return traces.Load(name)
}

// runTrace replays a recorded session's tool calls as trace.Replay
// schedules them: calls that overlapped in the recording run at the same
// time, a call that followed others waits for them, each is its own
// process in its own step cgroup, and each step's wall time from its start
// is recorded. Steps that would start after the measured phase are not
// started. It returns the recorded (compressed) makespan of the steps it
// started; the session's own makespan is the victim's elapsed time.
func runTrace(ctx context.Context, r VictimRun, rec *latency.Recorder) (time.Duration, error) {
	p := *r.Victim.Trace
	t, err := LoadTrace(p.Trace)
	if err != nil {
		return 0, err
	}
	self, err := Self()
	if err != nil {
		return 0, err
	}
	work := trace.Plan(t, p)
	var sess cgroupfs.Cgroup
	if r.Mount != "" {
		sess = cgroupfs.Cgroup{Path: filepath.Join(r.Mount, trial.SessionPath(r.Victim.Session))}
	}
	var static *staticPolicy
	if r.Mount != "" && r.Stack.Policy == stack.PolicyStatic {
		if static, err = openStaticPolicy(r.Policy); err != nil {
			return 0, err
		}
		defer static.close()
	}
	deadline := r.Start.Add(r.Dur)
	r.Start = r.Start.Add(p.Delay.D())
	if err := (victim.RealClock{}).SleepUntil(ctx, r.Start); err != nil {
		return 0, nil
	}
	// A step whose cgroup cannot be set up ends the replay: later steps
	// would fail the same way.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var setupMu sync.Mutex
	var setupErr error
	// Steps running at the same time are set up at the same time, as an
	// agent's parallel calls would be.
	setup := func(w trace.StepWork) (cgroupfs.Cgroup, error) {
		tid := TraceStepID(r.Victim.Name, w.Index)
		if r.DaemonSocket != "" {
			if _, err := api.NewClient(r.DaemonSocket).CreateStep(api.StepRequest{
				Session: r.Victim.Session, Step: tid, Class: DaemonClass(p.StepClass), Argv: []string{w.Tool}}); err != nil {
				return cgroupfs.Cgroup{}, fmt.Errorf("daemon: create step %s: %w", tid, err)
			}
		}
		cg, err := cgroupfs.Mkdir(filepath.Join(sess.Path, cgroupfs.StepPrefix+tid))
		if err != nil {
			return cg, err
		}
		if err := ApplyBudget(cg, staticBudget(r.Stack, p.StepBudget)); err != nil {
			return cg, err
		}
		if static != nil {
			if err := static.write(cg, p.StepClass); err != nil {
				return cg, err
			}
		}
		return cg, nil
	}
	// usage[i] is written by step i's goroutine before Replay hears it
	// ended, and read in done after that, so it needs no lock.
	usage := make([]trace.Usage, len(work))
	run := func(ctx context.Context, w trace.StepWork) (time.Time, error) {
		seed := load.SubSeed(r.Seed, strconv.Itoa(w.Index))
		var out bytes.Buffer
		if r.Mount == "" {
			cmd := traceStepCmd(ctx, self, seed, w, "")
			cmd.Stdout = &out
			began := time.Now()
			err := cmd.Run()
			usage[w.Index] = stepUsage(nil, cmd.ProcessState, out.Bytes())
			return began, err
		}
		cg, err := setup(w)
		if err != nil {
			setupMu.Lock()
			if setupErr == nil {
				setupErr = err
			}
			setupMu.Unlock()
			stop()
			return time.Now(), errSetup
		}
		cmd := traceStepCmd(ctx, self, seed, w, cg.Path)
		cmd.Stdout = &out
		began := time.Now()
		if err := cg.Start(cmd); err != nil {
			return began, err
		}
		err = cmd.Wait()
		usage[w.Index] = stepUsage(&cg, cmd.ProcessState, out.Bytes())
		return began, err
	}
	var log bytes.Buffer
	logStep := func(v any) {
		b, _ := json.Marshal(v)
		log.Write(append(b, '\n'))
	}
	res := trace.Replay(ctx, work, r.Start, deadline, run, func(s trace.StepResult) {
		w := work[s.Index]
		line := trial.TraceStep{Step: s.Index, Tool: w.Tool, After: w.After,
			Offset: trial.Duration(w.Offset), Nominal: trial.Duration(w.Nominal),
			Due: trial.Duration(s.Due.Sub(r.Start)), Began: trial.Duration(s.Began.Sub(r.Start)),
			Latency: trial.Duration(s.Done.Sub(s.Began))}
		if !errors.Is(s.Err, errSetup) {
			f := trace.Check(w.Expect, usage[s.Index])
			line.Fidelity = &f
		}
		switch {
		case errors.Is(s.Err, errSetup):
			line.Error = "not started: step setup failed"
		case s.Err != nil && ctx.Err() == nil:
			rec.Fail()
			line.Error = s.Err.Error()
			fmt.Fprintf(os.Stderr, "trace %s step %d: %v\n", r.Victim.Name, s.Index, s.Err)
		case s.Err != nil:
			line.Error = "stopped: " + s.Err.Error()
		default:
			rec.Record(s.Began, s.Done)
		}
		logStep(line)
	})
	ran := work[:0:0]
	last := r.Start
	for _, s := range res {
		if !errors.Is(s.Err, errSetup) {
			ran = append(ran, work[s.Index])
			last = maxTime(last, s.Done)
		}
	}
	nominal := trace.Nominal(ran)
	logStep(trial.TraceSession{Session: r.Victim.Session, Trace: t.Name, Steps: len(work), Started: len(ran),
		Makespan: trial.Duration(last.Sub(r.Start)), Recorded: trial.Duration(nominal)})
	fmt.Fprintf(os.Stderr, "trace %s: %d of %d steps, makespan %v, recorded %v (compressed)\n",
		r.Victim.Name, len(ran), len(work), last.Sub(r.Start).Round(time.Millisecond), nominal.Round(time.Millisecond))
	if r.Hlog != "" {
		if err := fsutil.WriteFile(TraceStepsPath(r.Hlog), log.Bytes()); err != nil {
			return nominal, err
		}
	}
	return nominal, setupErr
}

// traceStepCmd is one replayed tool call as its own agentwork process;
// cgroupDir is the step cgroup it will run in ("" for none).
func traceStepCmd(ctx context.Context, self string, seed uint64, w trace.StepWork, cgroupDir string) *exec.Cmd {
	b, _ := json.Marshal(w)
	args := []string{"trace-step", "--seed", strconv.FormatUint(seed, 10), "--work", string(b)}
	if cgroupDir != "" {
		args = append(args, "--cgroup", cgroupDir)
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Stderr = os.Stderr
	return cmd
}

// runTraceNeighbour replays a recorded session as noise: from its delay
// on, round after round until ctx ends, each tool call a child process in
// the neighbour's own cgroup, overlapping calls at the same time as in
// the recording. It counts the steps that completed and failed.
func runTraceNeighbour(ctx context.Context, p trial.TraceParams, seed uint64) (neighbour.Stats, error) {
	var st neighbour.Stats
	t, err := LoadTrace(p.Trace)
	if err != nil {
		return st, err
	}
	self, err := Self()
	if err != nil {
		return st, err
	}
	work := trace.Plan(t, p)
	start := time.Now().Add(p.Delay.D())
	if err := (victim.RealClock{}).SleepUntil(ctx, start); err != nil {
		return st, nil
	}
	for round := 0; ctx.Err() == nil; round++ {
		run := func(ctx context.Context, w trace.StepWork) (time.Time, error) {
			began := time.Now()
			return began, traceStepCmd(ctx, self, load.SubSeed(seed, fmt.Sprintf("%d/%d", round, w.Index)), w, "").Run()
		}
		trace.Replay(ctx, work, time.Now(), time.Now().Add(24*time.Hour), run, func(s trace.StepResult) {
			switch {
			case s.Err == nil:
				st.Ops++
			case ctx.Err() == nil:
				st.Failed++
			}
		})
	}
	return st, nil
}

// errSetup marks a step that never ran because its cgroup could not be
// set up; runTrace reports the setup error itself.
var errSetup = errors.New("step setup failed")

// stepUsage is what a finished step used: its cgroup's memory.peak and
// cpu.stat usage_usec, or, when it had no cgroup of its own, the peak the
// step counted itself and its process's user+system time; with the report
// the step printed on stdout. A value that cannot be read is nil.
func stepUsage(cg *cgroupfs.Cgroup, ps *os.ProcessState, stdout []byte) trace.Usage {
	var u trace.Usage
	var rep trace.StepReport
	if json.Unmarshal(bytes.TrimSpace(stdout), &rep) == nil {
		u.Report = &rep
	}
	if cg != nil {
		u.Source = trial.FidelityCgroup
		if v, err := cg.ReadUint("memory.peak"); err == nil {
			u.PeakBytes = ptr(float64(v))
		}
		if st, err := cg.FlatKeyed("cpu.stat"); err == nil {
			if v, ok := st["usage_usec"]; ok {
				u.CPUUsec = ptr(float64(v))
			}
		}
		return u
	}
	u.Source = trial.FidelityProcess
	if u.Report != nil {
		u.PeakBytes = ptr(float64(u.Report.PeakBytes))
	}
	if ps != nil {
		u.CPUUsec = ptr(float64((ps.UserTime() + ps.SystemTime()).Microseconds()))
	}
	return u
}

func ptr(v float64) *float64 { return &v }

// TraceStepsPath is where a trace victim whose latency log is hlog writes
// its steps log: one JSON line per replayed step, then one for the session.
func TraceStepsPath(hlog string) string {
	return hlog[:len(hlog)-len(filepath.Ext(hlog))] + ".steps.jsonl"
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// TraceStepID names the step cgroup of a trace victim's n-th tool call.
func TraceStepID(victimName string, n int) string {
	return fmt.Sprintf("%s-%03d", victimName, n)
}

// TraceDriverStep is the step that holds a trace victim's driver process:
// a cgroup with children may not hold processes itself.
func TraceDriverStep(victimName string) string { return victimName + "-driver" }

// RunNeighbour runs a neighbour until ctx ends.
func RunNeighbour(ctx context.Context, n trial.Neighbour, seed uint64) trial.WorkloadResult {
	res := trial.WorkloadResult{Name: n.Name, Kind: n.Kind}
	start := time.Now()
	var st neighbour.Stats
	switch n.Kind {
	case trial.NeighbourTrace:
		var err error
		if st, err = runTraceNeighbour(ctx, *n.Trace, seed); err != nil {
			res.Error = err.Error()
		}
	default:
		reg := kinds.Lookup(n.Kind)
		if reg == nil || !reg.Neighbour {
			res.Error = fmt.Sprintf("unknown neighbour kind %q", n.Kind)
			break
		}
		p, err := reg.NeighbourParams(n)
		if err != nil {
			res.Error = err.Error()
			break
		}
		ks, err := reg.RunNeighbour(ctx, kinds.NeighbourRun{Neighbour: n, Params: p, Seed: seed, Log: os.Stderr})
		st = neighbour.Stats{Ops: ks.Ops, Failed: ks.Failed}
		if err != nil {
			res.Error = err.Error()
		}
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
