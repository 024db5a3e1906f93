package runner

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/config"
	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
	"github.com/agentcgroup/agentcgroup/workloads/load"
)

// Options are the environment of a trial run.
type Options struct {
	SpecPath string    // the spec file, passed on to workload processes
	Out      string    // final output directory (written atomically)
	Mount    string    // cgroup2 mount (default cgroupfs.DefaultMount)
	Self     string    // agentwork binary (default: this executable)
	Log      io.Writer // progress lines (default os.Stderr)
}

// Timeouts around the measured phase, generous because TCG makes process
// creation and page faults slow.
const (
	readyTimeout = 60 * time.Second // victims preparing their working sets
	// Victims finishing after the measured phase: a guest that ran out of
	// memory stalled ~30 s before its OOM killer acted (measured), and a
	// victim caught in that is an outcome to record, not a trial to kill.
	finishGrace    = 60 * time.Second
	stopGrace      = 5 * time.Second // SIGTERM to SIGKILL
	startAllowance = 200 * time.Millisecond
)

type trialRun struct {
	spec  *trial.Spec
	opt   Options
	tmp   string
	m     trial.Manifest
	root  cgroupfs.Cgroup
	wlog  *os.File
	procs []*helper
	// daemon, when running, creates sessions and steps so it knows them.
	daemon *api.Client
	// policy is the parsed Spec.Policy (nil without a policy source);
	// maps are the pinned step_policy/step_pressure maps the runner
	// opened (static source) or found (daemon), for evidence.
	policy *config.Config
	maps   *sharedMaps
	ev     trial.Evidence
}

func (t *trialRun) daemonSocket() string {
	if t.spec.Daemon != nil && t.spec.Daemon.Ready != "" {
		return t.spec.Daemon.Ready
	}
	return trial.DaemonSocket
}

func (t *trialRun) errorf(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	t.m.Errors = append(t.m.Errors, msg)
	fmt.Fprintf(t.opt.Log, "trial %s: error: %s\n", t.spec.ID, msg)
}

func (t *trialRun) logf(format string, a ...any) {
	fmt.Fprintf(t.opt.Log, "trial %s: %s\n", t.spec.ID, fmt.Sprintf(format, a...))
}

func (t *trialRun) phase(name string, start time.Time) {
	t.m.Phases = append(t.m.Phases, trial.Phase{Name: name, Start: start, End: time.Now()})
}

// RunTrial runs one trial and writes its trial.Raw layout to opt.Out. It
// returns an error only when it could not write the output; problems with
// the trial itself are recorded in the manifest (OK=false).
func RunTrial(ctx context.Context, spec *trial.Spec, opt Options) error {
	if opt.Mount == "" {
		opt.Mount = cgroupfs.DefaultMount
	}
	if opt.Log == nil {
		opt.Log = os.Stderr
	}
	if opt.Self == "" {
		s, err := Self()
		if err != nil {
			return err
		}
		opt.Self = s
	}
	if err := setOOMScoreAdj(oomScoreExempt); err != nil {
		fmt.Fprintf(opt.Log, "runner: the OOM killer may end the runner or its helpers: %v\n", err)
	}
	t := &trialRun{spec: spec, opt: opt, tmp: opt.Out + ".partial"}
	if err := os.RemoveAll(t.tmp); err != nil {
		return err
	}
	for _, d := range []string{trial.VictimsDir, trial.SnapshotsDir, trial.LogsDir} {
		if err := os.MkdirAll(filepath.Join(t.tmp, d), 0o755); err != nil {
			return err
		}
	}
	// The workload processes read the spec from a file; keep a copy with
	// the output so the trial is self-describing.
	specCopy := filepath.Join(t.tmp, "spec.json")
	if err := fsutil.WriteJSON(specCopy, spec); err != nil {
		return err
	}
	if opt.SpecPath == "" {
		t.opt.SpecPath = specCopy
	}
	wlog, err := os.Create(filepath.Join(t.tmp, trial.WorkloadsLog))
	if err != nil {
		return err
	}
	t.wlog = wlog
	defer wlog.Close()

	t.m = trial.Manifest{Version: trial.ManifestVer, Spec: *spec, Kernel: kernelRelease(), Started: time.Now()}
	t.root = cgroupfs.Cgroup{Path: filepath.Join(opt.Mount, trial.CgroupRoot)}
	t.run(ctx)
	return t.finish()
}

func (t *trialRun) run(ctx context.Context) {
	s := t.spec
	setup := time.Now()
	t.m.CPULoopsPerMs = calibrate()
	t.m.GuestCPUs = runtime.NumCPU()
	if s.Swap.ZramMB > 0 {
		desc, err := setupZram(s.Swap.ZramMB)
		if err != nil {
			t.errorf("swap: %v", err)
			return
		}
		t.m.Swap = desc
	}
	if err := t.root.RemoveAll(context.Background(), true); err != nil {
		t.errorf("clearing a previous cgroup tree: %v", err)
		return
	}
	if !t.startStack(ctx) {
		return
	}
	if err := t.buildTree(); err != nil {
		t.errorf("cgroup tree: %v", err)
		return
	}
	t.phase("setup", setup)

	before := t.snapshot()
	if err := fsutil.WriteJSON(filepath.Join(t.tmp, trial.BeforeFile), before); err != nil {
		t.errorf("snapshot before: %v", err)
	}

	pw := t.watchPressure(100 * time.Millisecond)
	warm := time.Now()
	sampler := startSampler(t.opt.Mount, t.sampledCgroups(), s.SampleEvery.D(), filepath.Join(t.tmp, trial.TimelineFile), warm.Add(s.Warmup.D()))
	neighbours := t.startNeighbours()
	victims := t.startVictims(ctx)
	// Every victim is prepared; the measured phase starts once the warmup
	// (counted from the neighbours' start) is over.
	start := warm.Add(s.Warmup.D())
	if now := time.Now().Add(startAllowance); start.Before(now) {
		start = now
	}
	sampler.setBase(start)
	// The helpers' CPU is read again when the measured phase starts; the
	// phase's end waits for that reading.
	measuring := make(chan struct{})
	time.AfterFunc(time.Until(start), func() {
		t.markMeasureStart()
		close(measuring)
	})
	for _, v := range victims {
		v.go_(start)
	}
	t.m.Phases = append(t.m.Phases, trial.Phase{Name: "warmup", Start: warm, End: start})

	deadline := start.Add(s.Duration.D() + finishGrace)
	for _, v := range victims {
		v.wait(deadline)
	}
	t.m.Phases = append(t.m.Phases, trial.Phase{Name: "measure", Start: start, End: time.Now()})

	// Counters are read while neighbours still run, so they cover exactly
	// the contended run.
	if st := t.schedExtState(); s.Stack.Scheduler != stack.SchedNone {
		for _, h := range t.procs {
			if h.res.Name == "scheduler" {
				h.res.SchedExt = st
			}
		}
		if st != "enabled" {
			t.errorf("scheduler: /sys/kernel/sched_ext/state is %q at the end of the measured phase, want \"enabled\" (see %s)", st, trial.SchedulerLog)
		}
	} else if st == "enabled" {
		t.errorf("configuration %q runs on the fair class but a sched_ext scheduler is attached", s.Stack.Name)
	}
	<-measuring
	t.markSteady()
	t.collectEvidence(append(victims, neighbours...), pw)
	after := t.snapshot()
	if err := fsutil.WriteJSON(filepath.Join(t.tmp, trial.AfterFile), after); err != nil {
		t.errorf("snapshot after: %v", err)
	}

	teardown := time.Now()
	for _, v := range victims {
		v.release()
	}
	for _, n := range neighbours {
		n.stop()
	}
	sampler.stop()
	for _, v := range victims {
		t.m.Victims = append(t.m.Victims, v.result(t))
	}
	for _, n := range neighbours {
		t.m.Neighbours = append(t.m.Neighbours, n.result(t))
	}
	t.phase("teardown", teardown)
}

// finish stops helpers, removes the tree, fills gaps and renames the
// output into place.
func (t *trialRun) finish() error {
	for i := len(t.procs) - 1; i >= 0; i-- {
		t.procs[i].stop(t)
	}
	for _, h := range t.procs {
		// name files by where they end up, not the staging directory
		for i, a := range h.res.Args {
			if strings.HasPrefix(a, t.tmp+"/") {
				h.res.Args[i] = t.opt.Out + strings.TrimPrefix(a, t.tmp)
			}
		}
		t.m.Processes = append(t.m.Processes, h.res)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := t.root.RemoveAll(ctx, true); err != nil {
		t.logf("removing %s: %v", t.root.Path, err)
	}
	// A trial that stopped early still gets every file, so the host can
	// load and report it.
	for len(t.m.Victims) < len(t.spec.Victims) {
		v := t.spec.Victims[len(t.m.Victims)]
		t.m.Victims = append(t.m.Victims, trial.WorkloadResult{Name: v.Name, Kind: v.Kind, Error: "not run"})
	}
	for len(t.m.Neighbours) < len(t.spec.Neighbours) {
		n := t.spec.Neighbours[len(t.m.Neighbours)]
		t.m.Neighbours = append(t.m.Neighbours, trial.WorkloadResult{Name: n.Name, Kind: n.Kind, Error: "not run"})
	}
	for _, f := range []string{trial.BeforeFile, trial.AfterFile} {
		p := filepath.Join(t.tmp, f)
		if _, err := os.Stat(p); err != nil {
			fsutil.WriteJSON(p, trial.Snapshot{Time: time.Now()})
		}
	}
	if p := filepath.Join(t.tmp, trial.EvidenceFile); !exists(p) {
		t.ev.Errors = append(t.ev.Errors, "the trial stopped before the end of its measured phase")
		fsutil.WriteJSON(p, t.ev)
	}
	t.maps.close()
	if p := filepath.Join(t.tmp, trial.TimelineFile); !exists(p) {
		os.WriteFile(p, nil, 0o644)
	}
	t.m.Finished = time.Now()
	t.m.OK = len(t.m.Errors) == 0
	if err := fsutil.WriteJSON(filepath.Join(t.tmp, trial.ManifestFile), t.m); err != nil {
		return err
	}
	if err := os.RemoveAll(t.opt.Out); err != nil {
		return err
	}
	if err := os.Rename(t.tmp, t.opt.Out); err != nil {
		return err
	}
	t.logf("done ok=%v errors=%d -> %s", t.m.OK, len(t.m.Errors), t.opt.Out)
	return nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// calibrate measures load.CPU iterations per millisecond in this guest
// before anything else runs, so a reader can turn cpu_loops into time.
func calibrate() int64 {
	const n = 2_000_000
	start := time.Now()
	load.Sink += load.CPU(n)
	el := time.Since(start)
	if el <= 0 {
		return 0
	}
	return int64(float64(n) / (float64(el) / float64(time.Millisecond)))
}
