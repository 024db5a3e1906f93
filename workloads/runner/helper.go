package runner

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// helper is the scheduler or daemon process.
type helper struct {
	cmd  *exec.Cmd
	res  trial.ProcessResult
	done chan struct{}
	err  error
	log  *os.File
	// readyAt and readyCPU mark the end of start-up.
	readyAt  time.Time
	readyCPU float64
	// measureAt and measureCPU mark the start of the measured phase.
	measureAt  time.Time
	measureCPU float64
}

// startHelper starts the scheduler or the daemon with the flags its
// configuration implies, followed by the spec's extra flags (p may be nil),
// and waits until it is ready.
func (t *trialRun) startHelper(ctx context.Context, name, defBinary string, p *trial.Process, implied []string, logRel string) *helper {
	if p == nil {
		p = &trial.Process{}
	}
	args := append(slices.Clone(implied), p.Args...)
	h := &helper{res: trial.ProcessResult{Name: name, Binary: helperBinary(p, defBinary), Args: args, Log: logRel}}
	t.procs = append(t.procs, h)
	path, err := t.lookHelper(name, h.res.Binary)
	if err != nil {
		h.res.Error = err.Error()
		return nil
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
	h.readyAt = time.Now()
	if c, err := procCPUMs(h.cmd.Process.Pid); err == nil {
		h.readyCPU = c
		h.res.StartupCPUMs = c
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

func helperBinary(p *trial.Process, def string) string {
	if p != nil && p.Binary != "" {
		return p.Binary
	}
	return def
}

// lookHelper finds a helper binary, recording a trial error when absent.
func (t *trialRun) lookHelper(name, bin string) (string, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		err = fmt.Errorf("%s not found on PATH (%v): configuration %q needs it; build and install it into the guest image", bin, err, t.spec.Stack.Name)
		t.errorf("%s: %v", name, err)
	}
	return path, err
}

// missingHelper records a helper that could not be found, without starting
// anything, so a configuration fails before it touches the guest.
func (t *trialRun) missingHelper(name, defBinary string, p *trial.Process, logRel string) bool {
	bin := helperBinary(p, defBinary)
	if _, err := exec.LookPath(bin); err == nil {
		return false
	}
	_, err := t.lookHelper(name, bin)
	t.procs = append(t.procs, &helper{res: trial.ProcessResult{Name: name, Binary: bin, Log: logRel, Error: err.Error()}})
	return true
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
		h.res.CPUMs = cpuMs(h.cmd.ProcessState)
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
	h.res.CPUMs = cpuMs(h.cmd.ProcessState)
}

// markMeasureStart records each running helper's CPU time when the
// measured phase starts.
func (t *trialRun) markMeasureStart() {
	for _, h := range t.procs {
		if h.cmd == nil || h.cmd.Process == nil || h.readyAt.IsZero() {
			continue
		}
		if c, err := procCPUMs(h.cmd.Process.Pid); err == nil {
			h.measureAt, h.measureCPU = time.Now(), c
			h.res.SetupCPUMs = c - h.readyCPU
		}
	}
}

// markSteady records each running helper's CPU time since it was ready
// and over the measured phase: called at the end of the measured phase.
func (t *trialRun) markSteady() {
	for _, h := range t.procs {
		if h.cmd == nil || h.cmd.Process == nil || h.readyAt.IsZero() {
			continue
		}
		if c, err := procCPUMs(h.cmd.Process.Pid); err == nil {
			h.res.SteadyCPUMs = c - h.readyCPU
			h.res.SteadyMs = float64(time.Since(h.readyAt).Microseconds()) / 1000
			if !h.measureAt.IsZero() {
				h.res.MeasureCPUMs = c - h.measureCPU
				h.res.MeasureMs = float64(time.Since(h.measureAt).Microseconds()) / 1000
			}
		}
	}
}

// procCPUMs is a live process's user+system CPU time in milliseconds, from
// /proc/PID/stat (clock ticks of 10 ms: USER_HZ is 100 on Linux).
func procCPUMs(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields resume after its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	var ut, st float64
	if _, err := fmt.Sscan(f[11], &ut); err != nil {
		return 0, err
	}
	if _, err := fmt.Sscan(f[12], &st); err != nil {
		return 0, err
	}
	return (ut + st) * 10, nil
}

// cpuMs is a reaped process's user+system CPU time in milliseconds.
func cpuMs(ps *os.ProcessState) float64 {
	return float64((ps.UserTime() + ps.SystemTime()).Microseconds()) / 1000
}

func socketArg(t *trialRun) string {
	if t.daemon == nil {
		return ""
	}
	return t.daemonSocket()
}
