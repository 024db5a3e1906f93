package runner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentcgroup/agentcgroup/internal/fsutil"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/harness/trial"
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
	readyTimeout   = 60 * time.Second // victims preparing their working sets
	finishGrace    = 30 * time.Second // victims finishing after the measured phase
	stopGrace      = 5 * time.Second  // SIGTERM to SIGKILL
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
}

func (t *trialRun) daemonSocket() string {
	if t.spec.Daemon != nil && t.spec.Daemon.Ready != "" {
		return t.spec.Daemon.Ready
	}
	return trial.DaemonSocket
}

// DaemonClass maps a spec class to one the daemon accepts.
func DaemonClass(c string) string {
	if c == "" || c == trial.ClassDefault {
		return trial.ClassBackground
	}
	return c
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
	if s.Scheduler != nil {
		if h := t.startHelper(ctx, "scheduler", trial.SchedulerBinary, s.Scheduler, trial.SchedulerLog); h == nil {
			return
		}
	}
	if s.Daemon != nil {
		if h := t.startHelper(ctx, "daemon", trial.DaemonBinary, s.Daemon, trial.DaemonLog); h == nil {
			return
		}
		t.daemon = api.NewClient(t.daemonSocket())
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
	if st := t.schedExtState(); s.Scheduler != nil || s.Config == trial.ConfigCPUOnly || s.Config == trial.ConfigJoint {
		for _, h := range t.procs {
			if h.res.Name == "scheduler" {
				h.res.SchedExt = st
			}
		}
		if st != "enabled" {
			t.errorf("scheduler: /sys/kernel/sched_ext/state is %q at the end of the measured phase, want \"enabled\" (see %s)", st, trial.SchedulerLog)
		}
	} else if st == "enabled" {
		t.errorf("config %q runs on the default scheduler but a sched_ext scheduler is attached", s.Config)
	}
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

// buildTree creates every session and step with its budget, with cpu,
// memory and pids enabled down to the steps (the scheduler sees a task's
// cgroup through the cpu controller, so it must reach the leaves).
//
// With a daemon, sessions and steps are created through its API (it
// refuses to adopt a step it did not create with a class) and the spec's
// budgets are written after it applied its profile, so they hold at start;
// the daemon's later dynamic changes follow its own profile.
func (t *trialRun) buildTree() error {
	if _, err := cgroupfs.Mkdir(t.root.Path); err != nil {
		return err
	}
	ctrls := []string{"cpu", "memory", "pids"}
	for _, se := range t.spec.Sessions {
		if t.daemon != nil {
			if _, err := t.daemon.StartSession(api.SessionRequest{ID: se.ID}); err != nil {
				return fmt.Errorf("daemon: start session %s: %w", se.ID, err)
			}
		}
		sc, err := cgroupfs.Mkdir(filepath.Join(t.opt.Mount, trial.SessionPath(se.ID)))
		if err != nil {
			return err
		}
		if err := cgroupfs.EnableControllers(t.opt.Mount, trial.SessionPath(se.ID), ctrls...); err != nil {
			return err
		}
		if err := ApplyBudget(sc, se.Budget); err != nil {
			return err
		}
		t.m.Cgroups = append(t.m.Cgroups, trial.SessionPath(se.ID))
		for _, st := range se.Steps {
			if t.daemon != nil {
				if _, err := t.daemon.CreateStep(api.StepRequest{Session: se.ID, Step: st.ID, Class: DaemonClass(st.Class)}); err != nil {
					return fmt.Errorf("daemon: create step %s/%s: %w", se.ID, st.ID, err)
				}
			}
			cg, err := cgroupfs.Mkdir(filepath.Join(t.opt.Mount, trial.StepPath(se.ID, st.ID)))
			if err != nil {
				return err
			}
			if err := ApplyBudget(cg, st.Budget); err != nil {
				return err
			}
			t.m.Cgroups = append(t.m.Cgroups, trial.StepPath(se.ID, st.ID))
		}
	}
	for _, v := range t.spec.Victims {
		if v.Kind != trial.VictimTrace {
			continue
		}
		rel := trial.StepPath(v.Session, TraceDriverStep(v.Name))
		if t.daemon != nil {
			if _, err := t.daemon.CreateStep(api.StepRequest{Session: v.Session, Step: TraceDriverStep(v.Name), Class: trial.ClassBackground}); err != nil {
				return fmt.Errorf("daemon: create step %s: %w", rel, err)
			}
		}
		if _, err := cgroupfs.Mkdir(filepath.Join(t.opt.Mount, rel)); err != nil {
			return err
		}
		t.m.Cgroups = append(t.m.Cgroups, rel)
	}
	t.m.Cgroups = append([]string{trial.CgroupRoot}, t.m.Cgroups...)
	return nil
}

// sampledCgroups are the timeline's rows: every session and step.
func (t *trialRun) sampledCgroups() []string {
	var out []string
	for _, c := range t.m.Cgroups {
		if c != trial.CgroupRoot {
			out = append(out, c)
		}
	}
	return out
}

// snapshot reads every cgroup under the tree (including trace steps made
// during the run) plus the root and system-wide files.
func (t *trialRun) snapshot() trial.Snapshot {
	s := trial.Snapshot{Time: time.Now(), Cgroups: map[string]map[string]string{}, System: map[string]string{}}
	var walk func(rel string)
	walk = func(rel string) {
		cg := cgroupfs.Cgroup{Path: filepath.Join(t.opt.Mount, rel)}
		files := map[string]string{}
		for _, f := range trial.SnapshotFiles {
			if b, err := os.ReadFile(filepath.Join(cg.Path, f)); err == nil {
				files[f] = string(b)
			}
		}
		s.Cgroups[rel] = files
		kids, _ := cg.Children()
		for _, k := range kids {
			walk(filepath.Join(rel, k))
		}
	}
	if t.root.Exists() {
		walk(trial.CgroupRoot)
	}
	root := map[string]string{}
	for _, f := range trial.SnapshotFiles {
		if b, err := os.ReadFile(filepath.Join(t.opt.Mount, f)); err == nil {
			root[f] = string(b)
		}
	}
	s.Cgroups[""] = root
	for _, f := range []string{"/proc/pressure/cpu", "/proc/pressure/memory", "/proc/pressure/io", "/proc/vmstat", "/proc/meminfo", "/proc/swaps"} {
		if b, err := os.ReadFile(f); err == nil {
			s.System[f] = string(b)
		}
	}
	return s
}

func (t *trialRun) schedExtState() string {
	b, err := os.ReadFile("/sys/kernel/sched_ext/state")
	if err != nil {
		return "unavailable: " + err.Error()
	}
	return strings.TrimSpace(string(b))
}

// workload is one running workload process.
type workload struct {
	name, kind, cgroup string
	isVictim           bool
	cmd                *exec.Cmd
	resultPath         string
	stdin              io.WriteCloser
	ready              chan error
	finished           chan struct{} // victim reported its result and waits to be released
	done               chan struct{}
	waitErr            error
	startErr           error
}

func (t *trialRun) spawn(w *workload, args []string, pipes bool) {
	w.done = make(chan struct{})
	cmd := exec.Command(t.opt.Self, args...)
	cmd.Stderr = t.wlog
	cg := cgroupfs.Cgroup{Path: filepath.Join(t.opt.Mount, w.cgroup)}
	var stdout io.ReadCloser
	if pipes {
		var err error
		if w.stdin, err = cmd.StdinPipe(); err == nil {
			stdout, err = cmd.StdoutPipe()
		}
		if err != nil {
			w.startErr = err
			close(w.done)
			return
		}
	} else {
		cmd.Stdout = t.wlog
	}
	if err := cg.Start(cmd); err != nil {
		w.startErr = fmt.Errorf("starting %s in %s: %w", w.name, w.cgroup, err)
		close(w.done)
		return
	}
	w.cmd = cmd
	if pipes {
		w.ready = make(chan error, 1)
		w.finished = make(chan struct{})
		go func() {
			br := bufio.NewReader(stdout)
			line, err := br.ReadString('\n')
			if err == nil && strings.TrimSpace(line) != readyLine {
				err = fmt.Errorf("unexpected line %q", line)
			}
			w.ready <- err
			for {
				line, err := br.ReadString('\n')
				if strings.TrimSpace(line) == doneLine {
					close(w.finished)
					break
				}
				if err != nil {
					return
				}
				t.wlog.WriteString(line)
			}
			io.Copy(t.wlog, br)
		}()
	}
	go func() {
		w.waitErr = cmd.Wait()
		close(w.done)
	}()
}

// The victim handshake on stdin/stdout: the victim prints readyLine once
// prepared and reads the measured phase's start (Unix ns) from stdin; when
// finished it writes its result, prints doneLine and stays alive until
// stdin closes. Staying alive keeps its cgroup populated until the "after"
// snapshot (agentcgroupd removes a step cgroup once it empties).
const (
	readyLine = "ready"
	doneLine  = "done"
)

func (t *trialRun) startNeighbours() []*workload {
	var out []*workload
	for _, n := range t.spec.Neighbours {
		w := &workload{name: n.Name, kind: n.Kind, cgroup: trial.StepPath(n.Session, n.Step),
			resultPath: filepath.Join(t.tmp, "neighbours", n.Name+".result.json")}
		os.MkdirAll(filepath.Dir(w.resultPath), 0o755)
		t.spawn(w, []string{"run", "--spec", t.opt.SpecPath, "--neighbour", n.Name, "--result", w.resultPath}, false)
		if w.startErr != nil {
			t.errorf("neighbour %s: %v", n.Name, w.startErr)
		}
		out = append(out, w)
	}
	return out
}

func (t *trialRun) startVictims(ctx context.Context) []*workload {
	var out []*workload
	for _, v := range t.spec.Victims {
		cg := trial.StepPath(v.Session, v.Step)
		if v.Kind == trial.VictimTrace {
			cg = trial.StepPath(v.Session, TraceDriverStep(v.Name))
		}
		w := &workload{name: v.Name, kind: v.Kind, cgroup: cg, isVictim: true,
			resultPath: filepath.Join(t.tmp, trial.VictimsDir, v.Name+".result.json")}
		t.spawn(w, []string{"run", "--spec", t.opt.SpecPath, "--victim", v.Name,
			"--result", w.resultPath, "--hlog", filepath.Join(t.tmp, trial.HistogramPath(v.Name)),
			"--mount", t.opt.Mount, "--daemon-socket", socketArg(t)}, true)
		if w.startErr != nil {
			t.errorf("victim %s: %v", v.Name, w.startErr)
		}
		out = append(out, w)
	}
	timeout := time.After(readyTimeout)
	for _, w := range out {
		if w.ready == nil {
			continue
		}
		select {
		case err := <-w.ready:
			if err != nil {
				t.errorf("victim %s did not get ready: %v (see %s)", w.name, err, trial.WorkloadsLog)
			}
		case <-w.done:
			t.errorf("victim %s exited while preparing: %v (see %s)", w.name, w.waitErr, trial.WorkloadsLog)
		case <-timeout:
			t.errorf("victim %s not ready after %v", w.name, readyTimeout)
		}
	}
	return out
}

// go_ tells a prepared victim when the measured phase starts.
func (w *workload) go_(start time.Time) {
	if w.stdin != nil {
		fmt.Fprintf(w.stdin, "%d\n", start.UnixNano())
	}
}

// wait returns once the victim has finished (or exited); past the deadline
// it is killed.
func (w *workload) wait(deadline time.Time) {
	if w.cmd == nil {
		return
	}
	select {
	case <-w.finished:
	case <-w.done:
	case <-time.After(time.Until(deadline)):
		w.cmd.Process.Kill()
		<-w.done
	}
}

// release lets a finished victim exit and waits for it.
func (w *workload) release() {
	if w.cmd == nil {
		return
	}
	if w.stdin != nil {
		w.stdin.Close()
	}
	select {
	case <-w.done:
	case <-time.After(stopGrace):
		w.cmd.Process.Kill()
		<-w.done
	}
}

func (w *workload) stop() {
	if w.cmd == nil {
		return
	}
	select {
	case <-w.done:
		return
	default:
	}
	w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(stopGrace):
		w.cmd.Process.Kill()
		<-w.done
	}
}

// result merges what the process reported with how it ended.
func (w *workload) result(t *trialRun) trial.WorkloadResult {
	res := trial.WorkloadResult{Name: w.name, Kind: w.kind, Cgroup: w.cgroup, ExitCode: -1}
	if w.isVictim {
		if w.kind == trial.VictimTrace {
			res.Cgroup = filepath.Dir(w.cgroup)
		}
	}
	if w.startErr != nil {
		res.Error = w.startErr.Error()
		return res
	}
	var rep trial.WorkloadResult
	repErr := readResult(w.resultPath, &rep)
	if repErr == nil {
		res.Count, res.Failed, res.Nominal, res.Elapsed, res.Error = rep.Count, rep.Failed, rep.Nominal, rep.Elapsed, rep.Error
	}
	if w.cmd.ProcessState != nil {
		res.ExitCode = w.cmd.ProcessState.ExitCode()
	}
	var how string
	if ws, ok := w.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		how = "killed by " + ws.Signal().String()
	}
	if w.isVictim {
		if repErr == nil {
			res.Histogram = trial.HistogramPath(w.name)
		}
		switch {
		case repErr != nil:
			t.errorf("victim %s: no result (%s; %v); see %s", w.name, orExit(how, res.ExitCode), repErr, trial.WorkloadsLog)
		case res.Error != "":
			t.errorf("victim %s: %s", w.name, res.Error)
		case res.Count == 0:
			t.errorf("victim %s completed no requests in the measured phase", w.name)
		case res.ExitCode != 0:
			t.errorf("victim %s exited %s", w.name, orExit(how, res.ExitCode))
		}
		return res
	}
	// A neighbour killed by the OOM killer is an outcome worth reporting,
	// not a broken trial.
	if repErr != nil {
		res.Error = fmt.Sprintf("no result (%s)", orExit(how, res.ExitCode))
	} else if res.Error != "" {
		t.errorf("neighbour %s: %s", w.name, res.Error)
	}
	return res
}

func orExit(how string, code int) string {
	if how != "" {
		return how
	}
	return "exit status " + strconv.Itoa(code)
}

func readResult(path string, v *trial.WorkloadResult) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return jsonUnmarshal(b, v)
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

var errNotFound = errors.New("not found")

// helper is the scheduler or daemon process.
type helper struct {
	cmd  *exec.Cmd
	res  trial.ProcessResult
	done chan struct{}
	err  error
	log  *os.File
}

func (t *trialRun) startHelper(ctx context.Context, name, defBinary string, p *trial.Process, logRel string) *helper {
	bin := p.Binary
	if bin == "" {
		bin = defBinary
	}
	h := &helper{res: trial.ProcessResult{Name: name, Binary: bin, Args: append([]string(nil), p.Args...), Log: logRel}}
	t.procs = append(t.procs, h)
	path, err := exec.LookPath(bin)
	if err != nil {
		h.res.Error = fmt.Sprintf("%s not found on PATH (%v): config %q needs it; build and install it into the guest image", bin, err, t.spec.Config)
		t.errorf("%s: %s", name, h.res.Error)
		return nil
	}
	if p.ConfigTOML != "" {
		cfg := filepath.Join(t.tmp, trial.LogsDir, name+".toml")
		if err := os.WriteFile(cfg, []byte(p.ConfigTOML), 0o644); err != nil {
			t.errorf("%s: %v", name, err)
			return nil
		}
		h.res.Args = append(h.res.Args, "--config", cfg)
	}
	lf, err := os.Create(filepath.Join(t.tmp, logRel))
	if err != nil {
		t.errorf("%s: %v", name, err)
		return nil
	}
	h.log = lf
	h.cmd = exec.Command(path, h.res.Args...)
	h.cmd.Stdout, h.cmd.Stderr = lf, lf
	if err := h.cmd.Start(); err != nil {
		h.res.Error = err.Error()
		t.errorf("%s: start %s: %v", name, path, err)
		return nil
	}
	h.res.Started = true
	h.done = make(chan struct{})
	go func() { h.err = h.cmd.Wait(); close(h.done) }()
	t.logf("started %s: %s %s", name, path, strings.Join(h.res.Args, " "))

	wait := p.ReadyWait.D()
	readyPath := p.Ready
	if readyPath == "" && name == "daemon" {
		readyPath = trial.DaemonSocket
	}
	ready := func() bool { return true }
	switch {
	case readyPath != "":
		if wait == 0 {
			wait = 10 * time.Second
		}
		ready = func() bool { return exists(readyPath) }
	case name == "scheduler":
		if wait == 0 {
			wait = 15 * time.Second
		}
		ready = func() bool { return t.schedExtState() == "enabled" }
	default:
		if wait == 0 {
			wait = 500 * time.Millisecond
		}
		ready = func() bool { return false } // just give it the time
	}
	deadline := time.Now().Add(wait)
	for !ready() && time.Now().Before(deadline) {
		select {
		case <-h.done:
			h.res.Error = fmt.Sprintf("exited during start-up: %v (see %s)", h.err, logRel)
			h.res.ExitCode = h.cmd.ProcessState.ExitCode()
			t.errorf("%s: %s", name, h.res.Error)
			return nil
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return nil
		}
	}
	if readyPath != "" && !exists(readyPath) {
		h.res.Error = fmt.Sprintf("%s did not appear within %v (see %s)", readyPath, wait, logRel)
		t.errorf("%s: %s", name, h.res.Error)
		return nil
	}
	if name == "scheduler" {
		h.res.SchedExt = t.schedExtState()
		if h.res.SchedExt != "enabled" {
			h.res.Error = fmt.Sprintf("sched_ext state %q after %v, want \"enabled\" (see %s)", h.res.SchedExt, wait, logRel)
			t.errorf("%s: %s", name, h.res.Error)
			return nil
		}
	}
	return h
}

// stop ends a helper with SIGINT (both our helpers shut down cleanly on
// it), escalating to SIGKILL.
func (h *helper) stop(t *trialRun) {
	defer func() {
		if h.log != nil {
			h.log.Close()
		}
	}()
	if h.cmd == nil || h.done == nil {
		return
	}
	select {
	case <-h.done:
		h.res.ExitCode = h.cmd.ProcessState.ExitCode()
		if h.res.Error == "" {
			h.res.Error = fmt.Sprintf("exited before the trial ended: %v (see %s)", h.err, h.res.Log)
			t.errorf("%s: %s", h.res.Name, h.res.Error)
		}
		return
	default:
	}
	h.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-h.done:
	case <-time.After(stopGrace):
		h.cmd.Process.Kill()
		<-h.done
		t.logf("%s did not stop on SIGINT within %v; killed", h.res.Name, stopGrace)
	}
	h.res.ExitCode = h.cmd.ProcessState.ExitCode()
}

var _ = sync.Mutex{}
var _ = errNotFound

func socketArg(t *trialRun) string {
	if t.daemon == nil {
		return ""
	}
	return t.daemonSocket()
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
