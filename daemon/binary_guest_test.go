package daemon

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/daemon/api"
)

// The installed agentcgroupd binary: starts, answers the client, refuses a
// bad policy on SIGHUP while keeping the old one, and stops on SIGTERM
// leaving its steps alone.
func TestGuestDaemonBinarySignals(t *testing.T) {
	if ranInVM(t) {
		return
	}
	bin, err := exec.LookPath("agentcgroupd")
	if err != nil {
		t.Fatalf("agentcgroupd is not on the guest's PATH (the lab image ships every cmd/*): %v", err)
	}
	e := newEnv(t, simplePolicy, "")
	if out, err := exec.Command(bin, "--config", e.policy, "--check").CombinedOutput(); err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("--check: %v %s", err, out)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--config", e.policy)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	c := api.NewClient(e.sock)
	waitFor(t, 30*time.Second, "the daemon's socket", func() bool { _, err := c.Status(); return err == nil })
	if _, err := c.StartSession(api.SessionRequest{ID: "s1"}); err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("sleep", "300")
	st := runStep(t, c, "s1", "keep", "background", sleeper)
	defer stopProc(t, sleeper)

	if cli, err := exec.LookPath("agentcgroup"); err != nil {
		t.Errorf("agentcgroup is not on the guest's PATH: %v", err)
	} else {
		out, err := exec.Command(cli, "--socket", e.sock, "status").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "s1") || !strings.Contains(string(out), "keep") || !strings.Contains(string(out), "RUNNING") ||
			!strings.Contains(string(out), "memory_mode: ") {
			t.Errorf("agentcgroup status: %v\n%s", err, out)
		}
		out, err = exec.Command(cli, "--socket", e.sock, "status", "--json").Output()
		var js api.Status
		if err != nil || json.Unmarshal(out, &js) != nil || len(js.Steps) != 1 || js.Steps[0].CgroupID != st.CgroupID {
			t.Errorf("agentcgroup status --json: %v\n%s", err, out)
		}
	}
	good, _ := os.ReadFile(e.policy)
	e.writePolicy(strings.Replace(string(good), "[profiles.background]", "[profiles.background]\nclass = \"nightly\"", 1))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the refused reload in status", func() bool {
		s, err := c.Status()
		return err == nil && strings.HasPrefix(s.LastReload, "rejected")
	})
	if _, err := c.CreateStep(api.StepRequest{Session: "s1", Step: "after", Class: "background"}); err != nil {
		t.Fatalf("old policy not kept after a refused reload: %v", err)
	}
	if err := c.DeleteStep("s1", "after"); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("daemon exit: %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("daemon did not stop on SIGTERM")
	}
	if !strings.Contains(stderr.String(), `unknown class "nightly"`) {
		t.Errorf("stderr does not explain the refused reload:\n%s", stderr.String())
	}
	if err := sleeper.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("step process died with the daemon: %v", err)
	}
	if _, err := os.Stat(st.Cgroup); err != nil {
		t.Fatalf("step cgroup gone after daemon stop: %v", err)
	}
}
