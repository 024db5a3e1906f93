package kinds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
	"github.com/agentcgroup/agentcgroup/workloads/load"
	"github.com/agentcgroup/agentcgroup/workloads/trace"
	"github.com/agentcgroup/agentcgroup/workloads/traces"
	"github.com/agentcgroup/agentcgroup/workloads/victim"
)

// trace: a recorded agent session replayed. As a victim it is
// session-shaped: every tool call is its own process in a step cgroup of
// its own under the victim's session, calls that overlapped in the
// recording run at once, and each step's wall time is a latency. As a
// neighbour it replays the session round after round, every call a child
// process in the neighbour's step cgroup; a scenario gets trace neighbours
// only from an agents entry.
func init() {
	Register(&Kind{
		Name:        trial.VictimTrace,
		Summary:     "victim or neighbour: replay a converted agent trace",
		Victim:      true,
		Neighbour:   true,
		MacroRoles:  []trial.Role{trial.RoleNeighbour},
		Keys:        append([]string{"trace"}, ReplayKeys...),
		VictimClass: trial.ClassToolBurst,
		Typed: &Typed{
			Field:        "trace",
			PutVictim:    func(v *trial.Victim, p any) { v.Trace = p.(*trial.TraceParams) },
			GetVictim:    func(v trial.Victim) any { return v.Trace },
			PutNeighbour: func(n *trial.Neighbour, p any) { n.Trace = p.(*trial.TraceParams) },
			GetNeighbour: func(n trial.Neighbour) any { return n.Trace },
		},
		Parse: parseTrace,
		Check: checkTrace,
		Session: &Session{
			Place: func(params any, b trial.Budget, class string) {
				p := params.(*trial.TraceParams)
				p.StepBudget, p.StepClass = b, class
			},
			Delay: func(params any) time.Duration { return params.(*trial.TraceParams).Delay.D() },
			Run:   runTrace,
		},
		RunNeighbour: func(ctx context.Context, r NeighbourRun) (Stats, error) {
			return runTraceNeighbour(ctx, *r.Params.(*trial.TraceParams), r.Seed, r.Log)
		},
		Flags: traceFlags,
	})
}

// ReplayKeys are the scenario keys saying how a recorded session is
// replayed, whichever session that is: the trace kind's keys but trace,
// which a scenario macro expanding into trace workloads takes as well.
var ReplayKeys = []string{"compress", "mem_scale", "max_steps"}

// ParseReplay reads ReplayKeys.
func ParseReplay(in Input) *trial.TraceParams {
	p := &trial.TraceParams{Compress: 1, MemScale: 1}
	if f, ok := in.Float("compress"); ok {
		p.Compress = f
		if p.Compress < 1 {
			in.Problem("compress", "%g, want >= 1 (recorded time is divided by it)", p.Compress)
		}
	}
	if f, ok := in.Float("mem_scale"); ok {
		p.MemScale = f
		if p.MemScale <= 0 || p.MemScale > 4 {
			in.Problem("mem_scale", "%g, want 0 < mem_scale <= 4", p.MemScale)
		}
	}
	if n, ok := in.Int("max_steps"); ok {
		p.MaxSteps = int(n)
		if p.MaxSteps < 0 {
			in.Problem("max_steps", "must be >= 0 (0 = all)")
		}
	}
	return p
}

// CheckTraceName reports, at key, a trace named without a path that is not
// shipped; a .json path names a file inside the guest, which only the guest
// can check.
func CheckTraceName(in Input, key, name string) {
	if strings.Contains(name, "/") || strings.HasSuffix(name, ".json") {
		return
	}
	if !slices.Contains(traces.Names(), name) {
		in.Problem(key, "unknown trace %q; shipped traces: %s", name, strings.Join(traces.Names(), ", "))
	}
}

func parseTrace(in Input, role trial.Role, env Env) any {
	p := ParseReplay(in)
	if in.Required("trace") {
		if name, ok := in.Str("trace"); ok {
			p.Trace = name
			CheckTraceName(in, "trace", name)
		}
	}
	return p
}

func checkTrace(params any, role trial.Role, s *trial.Spec) []string {
	p := params.(*trial.TraceParams)
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	if p.Trace == "" {
		add("trace: name a converted trace (workloads/traces/<name>.json)")
	}
	if p.Compress < 1 {
		add("compress: %g, want >= 1 (recorded time divided by this)", p.Compress)
	}
	if p.MemScale <= 0 || p.MemScale > 4 {
		add("mem_scale: %g, want 0 < mem_scale <= 4", p.MemScale)
	}
	if p.MaxSteps < 0 {
		add("max_steps: must be >= 0 (0 = all)")
	}
	if p.Delay < 0 {
		add("delay: must be >= 0 (0 = start with the measured phase)")
	}
	if err := trial.CheckClass("step_class", p.StepClass); err != nil {
		add("%v", err)
	}
	for _, err := range p.StepBudget.Check("step_budget") {
		add("%v", err)
	}
	if role == trial.RoleVictim && p.Delay > 0 && p.Delay >= s.Duration {
		add("delay: %v is not shorter than the measured phase %v: no step would run", p.Delay, s.Duration)
	}
	return out
}

// loadTrace finds a trace by embedded name or file path.
func loadTrace(name string) (*trace.Trace, error) {
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
func runTrace(ctx context.Context, r SessionRun) (time.Duration, error) {
	p := *r.Params.(*trial.TraceParams)
	logw := orDiscard(r.Log)
	t, err := loadTrace(p.Trace)
	if err != nil {
		return 0, err
	}
	exe, err := self()
	if err != nil {
		return 0, err
	}
	work := trace.Plan(t, p)
	deadline := r.Start.Add(r.Dur)
	start := r.Start.Add(p.Delay.D())
	if err := (victim.RealClock{}).SleepUntil(ctx, start); err != nil {
		return 0, nil
	}
	// A step whose cgroup cannot be made ends the replay: later steps
	// would fail the same way.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var setupMu sync.Mutex
	var setupErr error
	// usage[i] is written by step i's goroutine before Replay hears it
	// ended, and read in done after that, so it needs no lock.
	usage := make([]trace.Usage, len(work))
	// Steps running at the same time are made at the same time, as an
	// agent's parallel calls would be.
	run := func(ctx context.Context, w trace.StepWork) (time.Time, error) {
		seed := load.SubSeed(r.Seed, strconv.Itoa(w.Index))
		var out bytes.Buffer
		if r.MakeStep == nil {
			cmd := traceStepCmd(ctx, exe, seed, w, "", logw)
			cmd.Stdout = &out
			began := time.Now()
			err := cmd.Run()
			usage[w.Index] = stepUsage(nil, cmd.ProcessState, out.Bytes())
			return began, err
		}
		cg, err := r.MakeStep(traceStepID(r.Victim.Name, w.Index), p.StepClass, p.StepBudget, []string{w.Tool})
		if err != nil {
			setupMu.Lock()
			if setupErr == nil {
				setupErr = err
			}
			setupMu.Unlock()
			stop()
			return time.Now(), errSetup
		}
		cmd := traceStepCmd(ctx, exe, seed, w, cg.Path, logw)
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
	res := trace.Replay(ctx, work, start, deadline, run, func(s trace.StepResult) {
		w := work[s.Index]
		line := trial.TraceStep{Step: s.Index, Tool: w.Tool, After: w.After,
			Offset: trial.Duration(w.Offset), Nominal: trial.Duration(w.Nominal),
			Due: trial.Duration(s.Due.Sub(start)), Began: trial.Duration(s.Began.Sub(start)),
			Latency: trial.Duration(s.Done.Sub(s.Began))}
		if !errors.Is(s.Err, errSetup) {
			f := trace.Check(w.Expect, usage[s.Index])
			line.Fidelity = &f
		}
		switch {
		case errors.Is(s.Err, errSetup):
			line.Error = "not started: step setup failed"
		case s.Err != nil && ctx.Err() == nil:
			r.Rec.Fail()
			line.Error = s.Err.Error()
			fmt.Fprintf(logw, "trace %s step %d: %v\n", r.Victim.Name, s.Index, s.Err)
		case s.Err != nil:
			line.Error = "stopped: " + s.Err.Error()
		default:
			r.Rec.Record(s.Began, s.Done)
		}
		logStep(line)
	})
	ran := work[:0:0]
	last := start
	for _, s := range res {
		if !errors.Is(s.Err, errSetup) {
			ran = append(ran, work[s.Index])
			last = maxTime(last, s.Done)
		}
	}
	nominal := trace.Nominal(ran)
	logStep(trial.TraceSession{Session: r.Victim.Session, Trace: t.Name, Steps: len(work), Started: len(ran),
		Makespan: trial.Duration(last.Sub(start)), Recorded: trial.Duration(nominal)})
	fmt.Fprintf(logw, "trace %s: %d of %d steps, makespan %v, recorded %v (compressed)\n",
		r.Victim.Name, len(ran), len(work), last.Sub(start).Round(time.Millisecond), nominal.Round(time.Millisecond))
	if r.StepsLog != "" {
		if err := fsutil.WriteFile(r.StepsLog, log.Bytes()); err != nil {
			return nominal, err
		}
	}
	return nominal, setupErr
}

// runTraceNeighbour replays a recorded session as noise: from its delay
// on, round after round until ctx ends, each tool call a child process in
// the neighbour's own cgroup, overlapping calls at the same time as in
// the recording. It counts the steps that completed and failed.
func runTraceNeighbour(ctx context.Context, p trial.TraceParams, seed uint64, logw io.Writer) (Stats, error) {
	var st Stats
	logw = orDiscard(logw)
	t, err := loadTrace(p.Trace)
	if err != nil {
		return st, err
	}
	exe, err := self()
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
			return began, traceStepCmd(ctx, exe, load.SubSeed(seed, fmt.Sprintf("%d/%d", round, w.Index)), w, "", logw).Run()
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

// traceStepCmd is one replayed tool call as its own agentwork process
// (agentwork trace-step); cgroupDir is the step cgroup it will run in
// ("" for none).
func traceStepCmd(ctx context.Context, exe string, seed uint64, w trace.StepWork, cgroupDir string, stderr io.Writer) *exec.Cmd {
	b, _ := json.Marshal(w)
	args := []string{"trace-step", "--seed", strconv.FormatUint(seed, 10), "--work", string(b)}
	if cgroupDir != "" {
		args = append(args, "--cgroup", cgroupDir)
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stderr = stderr
	return cmd
}

// errSetup marks a step that never ran because its cgroup could not be
// made; runTrace reports the error itself.
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

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// traceStepID names the step cgroup of a trace victim's n-th tool call.
func traceStepID(victimName string, n int) string {
	return fmt.Sprintf("%s-%03d", victimName, n)
}

// orDiscard is w, or a writer that drops everything when there is none.
func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

func traceFlags(fs *flag.FlagSet, role trial.Role) func([]string) (any, error) {
	p := &trial.TraceParams{}
	fs.StringVar(&p.Trace, "trace", "", "embedded trace name (see 'agentwork traces') or a .json path")
	fs.Float64Var(&p.Compress, "compress", 20, "divide recorded time by this")
	fs.Float64Var(&p.MemScale, "mem-scale", 0.25, "multiply recorded memory by this")
	fs.IntVar(&p.MaxSteps, "max-steps", 0, "replay at most this many tool calls (0: all)")
	return func([]string) (any, error) {
		if p.Trace == "" {
			return nil, fmt.Errorf("--trace is required; embedded traces: %v", traces.Names())
		}
		return p, nil
	}
}
