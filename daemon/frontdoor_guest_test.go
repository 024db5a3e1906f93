package daemon

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/config"
	"github.com/agentcgroup/agentcgroup/daemon/memhog"
)

// agentcgroupd started with no flags on a node without a policy file runs
// the built-in profiles in monitor-only mode: it serves the API, status and
// metrics and runs steps in their own cgroups, and leaves every cgroup knob
// at the kernel's default. A --config naming a missing file still fails.
func TestGuestDaemonWithoutPolicyFile(t *testing.T) {
	if ranInVM(t) {
		return
	}
	bin, err := exec.LookPath("agentcgroupd")
	if err != nil {
		t.Fatalf("agentcgroupd is not on the guest's PATH: %v", err)
	}
	const defaultPolicy = "/etc/agentcgroup/policy.toml"
	if _, err := os.Stat(defaultPolicy); !os.IsNotExist(err) {
		t.Fatalf("the guest has %s (%v); this test needs none", defaultPolicy, err)
	}
	def := config.Defaults().Daemon
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = cgroupfs.DefaultTree.Root().RemoveAll(ctx, true)
		_ = os.RemoveAll(def.PinDir)
		_ = os.RemoveAll(def.StateDir)
	})

	out, err := exec.Command(bin, "--config", "/etc/agentcgroup/missing.toml").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "missing.toml") || !strings.Contains(string(out), "no such file") {
		t.Fatalf("an explicit missing --config must fail naming the file: %v\n%s", err, out)
	}
	if _, err := os.Stat(cgroupfs.DefaultTree.Root().Path); !os.IsNotExist(err) {
		t.Fatalf("the failed start created the cgroup tree: %v", err)
	}
	out, err = exec.Command(bin, "--check").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "built-in") {
		t.Fatalf("--check without a policy file: %v\n%s", err, out)
	}

	var stderr lockedBuffer
	cmd := exec.Command(bin)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	c := api.NewClient(def.Socket)
	waitFor(t, 30*time.Second, "the daemon's socket at "+def.Socket, func() bool { _, err := c.Status(); return err == nil })
	var notes []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.HasPrefix(l, "agentcgroupd: ") {
			notes = append(notes, l)
		}
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "no policy file at "+defaultPolicy) ||
		!strings.Contains(notes[0], "monitor-only") || !strings.Contains(notes[0], "to enforce, write a policy there") {
		t.Fatalf("want one line saying the daemon runs built-in profiles monitor-only and where a policy goes, got %q", notes)
	}

	if _, err := c.StartSession(api.SessionRequest{ID: "s1"}); err != nil {
		t.Fatal(err)
	}
	hog, _ := memhog.Command("mode=grow,chunk=2M,every=10ms,total=64M,hold=300s")
	stdout, err := hog.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	st := runStep(t, c, "s1", "work", "tool_burst", hog)
	defer stopProc(t, hog)
	grown := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "grown-all") {
				grown <- true
			}
		}
		close(grown)
	}()
	select {
	case ok := <-grown:
		if !ok {
			t.Fatal("the step's command ended before allocating 64M")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the step's command did not allocate 64M within 60s")
	}

	s, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	if !s.MonitorOnly || s.Config != config.BuiltinName || len(s.Steps) != 1 || s.Steps[0].Profile != "tool_burst" ||
		s.Steps[0].MemoryCurrent < 64<<20 {
		t.Fatalf("status: %+v", s)
	}
	resp, err := http.Get("http://" + def.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `agentcgroup_step_state{class="tool_burst",profile="tool_burst",session="s1",state="RUNNING",step="work"} 1`; !strings.Contains(string(body), want) {
		t.Fatalf("/metrics lacks %s", want)
	}

	// The knobs a policy would set, on the step and every ancestor the
	// daemon made, still hold the kernel's defaults.
	defaults := map[string]string{"memory.high": "max", "memory.max": "max", "memory.low": "0", "memory.min": "0",
		"memory.oom.group": "0", "cpu.weight": "100", "cpu.max": "max 100000", "cgroup.freeze": "0"}
	stepCg := cgroupfs.Cgroup{Path: st.Cgroup}
	for _, cg := range []cgroupfs.Cgroup{stepCg, {Path: filepath.Dir(st.Cgroup)}, cgroupfs.DefaultTree.Root()} {
		for knob, want := range defaults {
			if got, err := cg.Read(knob); err != nil || got != want {
				t.Errorf("%s/%s = %q (%v), want the kernel default %q", cg.Path, knob, got, err, want)
			}
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the deferred reap
		if err != nil {
			t.Fatalf("daemon exit: %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("daemon did not stop on SIGTERM")
	}
	if got, _ := stepCg.Read("cgroup.freeze"); got != "0" {
		t.Errorf("cgroup.freeze = %s after the daemon stopped", got)
	}
}

// lockedBuffer is a bytes.Buffer a process writes to while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
