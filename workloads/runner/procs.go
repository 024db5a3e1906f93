package runner

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/kinds"
)

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
	// oomBase and oomExit are the cgroup's memory.events.local oom_kill
	// when the process started and when it died of SIGKILL (read at once:
	// a daemon may remove an emptied step cgroup).
	oomBase, oomExit int64
	// stalled: the runner killed the victim at the measured phase's
	// deadline, before it reported a result.
	stalled bool
}

// signal names the signal that ended the process ("" if none did).
func (w *workload) signal() string {
	if w.cmd == nil || w.cmd.ProcessState == nil {
		return ""
	}
	if ws, ok := w.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal().String()
	}
	return ""
}

// oomKilled: the OOM killer ended the process. It counts the kill in the
// victim's memory cgroup before it sends SIGKILL, so a process that died
// of SIGKILL while its cgroup's oom_kill grew was its choice.
func (w *workload) oomKilled() bool {
	if w.cmd == nil || w.cmd.ProcessState == nil {
		return false
	}
	ws, ok := w.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL && w.oomExit > w.oomBase
}

func oomKills(cg string) int64 {
	ev, _ := cgroupfs.Cgroup{Path: cg}.FlatKeyed("memory.events.local")
	return int64(ev["oom_kill"])
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
	w.oomBase = oomKills(cg.Path)
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
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			w.oomExit = oomKills(cg.Path)
		}
		close(w.done)
	}()
}

// The victim handshake on stdin/stdout: the victim prints readyLine once
// prepared and reads the measured phase's start (Unix ns) from stdin; when
// finished it writes its result, prints doneLine and stays alive until
// stdin closes. Staying alive keeps its cgroup populated until the "after"
// snapshot (agentcgroupd removes an emptied step cgroup unless its
// keep_ended is set).
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
		if kinds.SessionShaped(v.Kind) {
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
			if w.oomKilled() {
				t.logf("victim %s was OOM-killed while preparing: a failed session, recorded as its outcome", w.name)
				break
			}
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
		w.stalled = true
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
	if w.isVictim && kinds.SessionShaped(w.kind) {
		// the session is the victim's cgroup: the driver's step is one
		// of its steps
		res.Cgroup = filepath.Dir(w.cgroup)
	}
	if w.startErr != nil {
		res.Error = w.startErr.Error()
		return res
	}
	var rep trial.WorkloadResult
	repErr := readResult(w.resultPath, &rep)
	if repErr == nil {
		res.Count, res.Failed, res.Nominal, res.Elapsed, res.Error = rep.Count, rep.Failed, rep.Nominal, rep.Elapsed, rep.Error
		res.AllocCount = rep.AllocCount
	}
	if w.cmd.ProcessState != nil {
		res.ExitCode = w.cmd.ProcessState.ExitCode()
	}
	var how string
	if sig := w.signal(); sig != "" {
		how = "killed by " + sig
		res.Signal = sig
	}
	res.OOMKilled = w.oomKilled()
	if w.isVictim {
		if repErr == nil {
			res.Histogram = trial.HistogramPath(w.name)
			if exists(filepath.Join(t.tmp, trial.AllocHistogramPath(w.name))) {
				res.AllocHistogram = trial.AllocHistogramPath(w.name)
			}
		}
		if kinds.SessionShaped(w.kind) && exists(filepath.Join(t.tmp, trial.TraceStepsPath(w.name))) {
			res.Steps = trial.TraceStepsPath(w.name)
		}
		switch {
		case res.OOMKilled:
			// A session the OOM killer ended: the trial's outcome for
			// this victim, not a fault of the trial. Its latencies
			// died with it.
			res.Count, res.Failed, res.AllocCount, res.Histogram, res.AllocHistogram = 0, 0, 0, "", ""
			t.logf("victim %s was ended by the OOM killer: recorded as a failed session", w.name)
		case repErr != nil && w.stalled && len(t.spec.Neighbours) > 0:
			// The neighbours left it no progress to report before the
			// deadline (a session stuck in reclaim and refaults on an
			// overcommitted guest): that is the contention's outcome, a
			// failed session, like one the OOM killer ends. Without
			// neighbours nothing explains a stall but a fault of the
			// trial, which stays an error below.
			res.Stalled = true
			res.Count, res.Failed, res.AllocCount, res.Histogram, res.AllocHistogram = 0, 0, 0, "", ""
			t.logf("victim %s had not finished its measured phase at the deadline and was killed: recorded as a failed session", w.name)
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
