package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/eventlog"
	"github.com/agentcgroup/agentcgroup/daemon/memhog"
)

func TestMain(m *testing.M) {
	memhog.MaybeRun()
	os.Exit(m.Run())
}

// env is one test's daemon setup: a policy file and the paths it names.
type env struct {
	t      *testing.T
	dir    string
	policy string
	log    string
	sock   string
}

// newEnv writes a policy whose [daemon] section points into a fresh
// directory; profiles is the rest of the file.
func newEnv(t *testing.T, profiles string, daemonExtra string) *env {
	dir := t.TempDir()
	e := &env{t: t, dir: dir, policy: filepath.Join(dir, "policy.toml"), log: filepath.Join(dir, "events.jsonl"),
		sock: filepath.Join(dir, "d.sock")}
	e.writePolicy(fmt.Sprintf(`[daemon]
socket = %q
state_dir = %q
event_log = %q
pin_dir = %q
metrics_addr = "127.0.0.1:0"
tick = "20ms"
%s
%s`, e.sock, filepath.Join(dir, "state"), e.log, "/sys/fs/bpf/agc-"+strings.ReplaceAll(t.Name(), "/", "-"), daemonExtra, profiles))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = cgroupfs.DefaultTree.Root().RemoveAll(ctx, true)
		_ = os.RemoveAll("/sys/fs/bpf/agc-" + strings.ReplaceAll(t.Name(), "/", "-"))
	})
	return e
}

func (e *env) writePolicy(s string) {
	if err := os.WriteFile(e.policy, []byte(s), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// start runs a daemon until the returned stop is called.
func (e *env) start() (*Daemon, func()) {
	e.t.Helper()
	d, err := New(Options{ConfigPath: e.policy})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-d.Ready():
	case err := <-done:
		e.t.Fatalf("daemon did not start: %v", err)
	case <-time.After(30 * time.Second):
		e.t.Fatal("daemon not ready after 30s")
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("daemon: %v", err)
			}
		case <-time.After(30 * time.Second):
			buf := make([]byte, 1<<20)
			e.t.Errorf("daemon did not stop within 30s; goroutines:\n%s", buf[:runtime.Stack(buf, true)])
		}
	}
	e.t.Cleanup(stop)
	return d, stop
}

func (e *env) client() *api.Client { return api.NewClient(e.sock) }

// events reads the event log.
func (e *env) events() []eventlog.Event {
	e.t.Helper()
	f, err := os.Open(e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	var out []eventlog.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev eventlog.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			e.t.Fatalf("event log line %q: %v", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}

func transitions(evs []eventlog.Event, step string) []eventlog.Event {
	var out []eventlog.Event
	for _, e := range evs {
		if e.Kind == "transition" && e.Step == step {
			out = append(out, e)
		}
	}
	return out
}

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out after %v waiting for %s", d, what)
}

// runStep creates a step through the API and starts cmd inside it, as
// `agentcgroup step run` does.
func runStep(t *testing.T, c *api.Client, sid, tid, class string, cmd *exec.Cmd) api.Step {
	t.Helper()
	st, err := c.CreateStep(api.StepRequest{Session: sid, Step: tid, Class: class, Argv: cmd.Args})
	if err != nil {
		t.Fatal(err)
	}
	if err := (cgroupfs.Cgroup{Path: st.Cgroup}).Start(cmd); err != nil {
		t.Fatal(err)
	}
	return st
}

func killedBy(err error) syscall.Signal {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return ws.Signal()
		}
	}
	return 0
}

// stopProc kills cmd and reaps it, reporting (instead of hanging) when the
// process does not die within 20 s, with its kernel state for diagnosis.
func stopProc(t *testing.T, cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = cmd.Process.Kill()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		pid := cmd.Process.Pid
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		stack, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stack", pid))
		t.Errorf("pid %d did not die within 20s of SIGKILL:\n%s\n%s", pid, st, stack)
	}
}
