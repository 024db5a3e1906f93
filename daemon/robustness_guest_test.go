package daemon

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/memhog"
)

const simplePolicy = `
[profiles.interactive]
[profiles.interactive.memory]
high = "256M"

[profiles.tool_burst]
[profiles.tool_burst.memory]
high = "64M"
max = "128M"
oom_group = true

[profiles.background]
[profiles.background.memory]
high = "32M"
`

// treeListing lists every directory under the agent tree.
func treeListing(t *testing.T) []string {
	var out []string
	root := cgroupfs.DefaultTree.Root().Path
	filepath.WalkDir(root, func(p string, de os.DirEntry, err error) error {
		if err == nil && de.IsDir() {
			out = append(out, strings.TrimPrefix(p, root))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func apiStatus(err error) int {
	var ae *api.APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

func TestGuestRestartKeepsLiveSteps(t *testing.T) {
	if ranInVM(t) {
		return
	}
	e := newEnv(t, simplePolicy, "")
	_, stop := e.start()
	c := e.client()
	if _, err := c.StartSession(api.SessionRequest{ID: "s1", Labels: map[string]string{"repo": "r"}}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "300")
	st := runStep(t, c, "s1", "live", "tool_burst", cmd)
	defer stopProc(t, cmd)
	short := exec.Command("sleep", "1")
	runStep(t, c, "s1", "short", "background", short)

	stop() // the daemon goes away; its steps must not
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("step process gone after daemon stop: %v", err)
	}
	cg := cgroupfs.Cgroup{Path: st.Cgroup}
	if ev, err := cg.Events(); err != nil || !ev.Populated || ev.Frozen {
		t.Fatalf("step after daemon stop: %+v %v", ev, err)
	}
	short.Wait() // ends while no daemon runs

	_, _ = e.start()
	got, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Sessions) != 1 || got.Sessions[0].ID != "s1" || got.Sessions[0].Labels["repo"] != "r" {
		t.Fatalf("sessions after restart: %+v", got.Sessions)
	}
	if len(got.Steps) != 1 {
		t.Fatalf("steps after restart: %+v (want only the live one; the ended one is cleaned up)", got.Steps)
	}
	s := got.Steps[0]
	if s.Step != "live" || s.CgroupID != st.CgroupID || s.Class != "tool_burst" || s.State != "RUNNING" || s.MemoryHigh != "67108864" {
		t.Fatalf("adopted step %+v, created as %+v", s, st)
	}
	var adopted, cleaned bool
	for _, ev := range e.events() {
		adopted = adopted || (ev.Kind == "step_adopted" && ev.Step == "live")
		cleaned = cleaned || (ev.Kind == "step_removed" && ev.Step == "short")
	}
	if !adopted || !cleaned {
		t.Fatalf("event log: adopted=%v cleaned=%v", adopted, cleaned)
	}
	// The adopted step is fully managed: deleting it kills and removes it.
	if err := c.DeleteStep("s1", "live"); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); killedBy(err) != 9 {
		t.Fatalf("adopted step's process ended with %v, want SIGKILL", err)
	}
	if cg.Exists() {
		t.Fatal("adopted step's cgroup not removed")
	}
}

func TestGuestBadInputLeavesNothing(t *testing.T) {
	if ranInVM(t) {
		return
	}
	e := newEnv(t, simplePolicy, "")
	_, _ = e.start()
	c := e.client()
	if _, err := c.StartSession(api.SessionRequest{ID: "s1"}); err != nil {
		t.Fatal(err)
	}
	before := treeListing(t)
	cases := []struct {
		req  api.StepRequest
		code int
		want string
	}{
		{api.StepRequest{Session: "s1", Class: "gpu_hog", Argv: []string{"true"}}, 400, `unknown class "gpu_hog"`},
		{api.StepRequest{Session: "nope", Class: "tool_burst"}, 404, `session "nope" does not exist`},
		{api.StepRequest{Session: "s1", Step: "../escape", Class: "tool_burst"}, 400, "step id"},
		{api.StepRequest{Session: "../x", Class: "tool_burst"}, 400, "session id"},
	}
	for _, tc := range cases {
		_, err := c.CreateStep(tc.req)
		if apiStatus(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v (status %d), want %d containing %q", tc.req, err, apiStatus(err), tc.code, tc.want)
		}
	}
	if _, err := c.StartSession(api.SessionRequest{ID: "s1"}); apiStatus(err) != http.StatusConflict {
		t.Errorf("duplicate session: %v", err)
	}
	if _, err := c.StartSession(api.SessionRequest{ID: "a b"}); apiStatus(err) != http.StatusBadRequest {
		t.Errorf("bad session id: %v", err)
	}
	if after := treeListing(t); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Fatalf("bad requests changed the tree: %v -> %v", before, after)
	}

	// A step that cannot get its knobs (memory.high above memory.max is
	// rejected by config validation, so use a duplicate id instead).
	cmd := exec.Command("sleep", "300")
	runStep(t, c, "s1", "dup", "tool_burst", cmd)
	defer stopProc(t, cmd)
	if _, err := c.CreateStep(api.StepRequest{Session: "s1", Step: "dup", Class: "tool_burst"}); apiStatus(err) != http.StatusConflict {
		t.Errorf("duplicate step: %v", err)
	}
	if err := c.EndSession("s1", false); apiStatus(err) != http.StatusConflict || !strings.Contains(err.Error(), "--force") {
		t.Errorf("ending a session with live steps: %v", err)
	}

	// The command-line client fails cleanly too, when it is in the image.
	if cli, err := exec.LookPath("agentcgroup"); err == nil {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"step", "run", "--session", "s1", "--class", "gpu_hog", "--", "true"}, "unknown class"},
			{[]string{"step", "run", "--session", "nope", "--class", "tool_burst", "--", "true"}, "does not exist"},
		} {
			out, err := exec.Command(cli, append([]string{"--socket", e.sock}, tc.args...)...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), tc.want) {
				t.Errorf("agentcgroup %v: %v %q", tc.args, err, out)
			}
		}
		out, err := exec.Command(cli, "--socket", e.sock, "step", "run", "--session", "s1", "--class", "background", "--",
			"sh", "-c", "cat /proc/self/cgroup; exit 7").CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 7 || !strings.Contains(string(out), "/agentcgroup/sess_s1/step_") {
			t.Errorf("agentcgroup step run: %v %q (want exit 7, run inside the step)", err, out)
		}
	} else {
		t.Logf("agentcgroup is not on the guest's PATH; checked the API only")
	}
	if after := treeListing(t); len(after) != len(before)+1 {
		t.Errorf("tree after the CLI runs: %v (want the one live step added to %v)", after, before)
	}
}

func TestGuestReload(t *testing.T) {
	if ranInVM(t) {
		return
	}
	e := newEnv(t, simplePolicy, "")
	d, _ := e.start()
	c := e.client()
	if _, err := c.StartSession(api.SessionRequest{ID: "s1"}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "300")
	st := runStep(t, c, "s1", "x", "tool_burst", cmd)
	defer stopProc(t, cmd)
	good, _ := os.ReadFile(e.policy)

	e.writePolicy(strings.Replace(string(good), `high = "64M"`, `high = "64 potatoes"`, 1))
	err := d.Reload()
	if err == nil || !strings.Contains(err.Error(), "policy.toml:") || !strings.Contains(err.Error(), "profiles.tool_burst.memory.high") {
		t.Fatalf("invalid reload: %v (want file:line and the field)", err)
	}
	if err := c.Reload(); apiStatus(err) != http.StatusUnprocessableEntity {
		t.Fatalf("reload over the API: %v", err)
	}
	sts, _ := c.Status()
	if !strings.HasPrefix(sts.LastReload, "rejected: ") {
		t.Fatalf("status does not report the refused reload: %q", sts.LastReload)
	}
	if d.Config().Profiles["tool_burst"].Memory.High != 64<<20 {
		t.Fatal("old policy not kept")
	}
	var rejected bool
	for _, ev := range e.events() {
		rejected = rejected || (ev.Kind == "config_rejected" && strings.Contains(ev.Error, "64 potatoes"))
	}
	if !rejected {
		t.Fatal("refused reload not in the event log")
	}

	e.writePolicy(strings.Replace(string(good), `high = "64M"`, `high = "96M"`, 1))
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if v, _ := (cgroupfs.Cgroup{Path: st.Cgroup}).ReadLimit("memory.high"); v != 96<<20 {
		t.Fatalf("live step memory.high %d after reload, want %d", v, 96<<20)
	}
}

// Monitor-only: pressure is observed and logged as dry runs; no knob moves.
func TestGuestMonitorOnly(t *testing.T) {
	if ranInVM(t) {
		return
	}
	e := newEnv(t, escalationPolicy, "monitor_only = true")
	_, _ = e.start()
	c := e.client()
	if _, err := c.StartSession(api.SessionRequest{ID: "s1"}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "300")
	st := runStep(t, c, "s1", "m", "tool_burst", cmd)
	defer stopProc(t, cmd)
	cg := cgroupfs.Cgroup{Path: st.Cgroup}
	if v, _ := cg.ReadLimit("memory.high"); v != cgroupfs.Max {
		t.Fatalf("monitor-only daemon set memory.high to %d", v)
	}
	// Someone else's limit makes the step thrash; the daemon only watches.
	if err := cg.WriteLimit("memory.high", 24<<20); err != nil {
		t.Fatal(err)
	}
	blow, err := memhog.Command("mode=grow,chunk=2M,every=10ms,total=120M,hold=60s")
	if err != nil {
		t.Fatal(err)
	}
	if err := cg.Start(blow); err != nil {
		t.Fatal(err)
	}
	defer stopProc(t, blow)
	waitFor(t, 60*time.Second, "a dry-run freeze in the event log", func() bool {
		for _, ev := range transitions(e.events(), "m") {
			if ev.To == "SOFT_PAUSED" {
				if !ev.DryRun {
					t.Fatalf("freeze not marked dry_run: %+v", ev)
				}
				return true
			}
		}
		return false
	})
	if fz, _ := cg.Read("cgroup.freeze"); fz != "0" {
		t.Fatalf("monitor-only daemon froze the step (cgroup.freeze=%s)", fz)
	}
	if v, _ := cg.ReadLimit("memory.high"); v != 24<<20 {
		t.Fatalf("memory.high changed to %d", v)
	}
}

// With keep_ended, a step whose command finished keeps its cgroup and
// counters (for a closing snapshot) until the client deletes it; a command
// that exits before the daemon ever saw it running still counts as ended.
func TestGuestKeepEndedStep(t *testing.T) {
	if ranInVM(t) {
		return
	}
	e := newEnv(t, simplePolicy, `keep_ended = "1h"`)
	e.start()
	c := e.client()
	if _, err := c.StartSession(api.SessionRequest{ID: "s1"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ tid, script string }{
		{"slow", "sleep 0.3"},
		{"instant", "exit 0"},
	} {
		cmd := exec.Command("sh", "-c", tc.script)
		st := runStep(t, c, "s1", tc.tid, "tool_burst", cmd)
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, tc.tid+"'s step_ended event", func() bool {
			for _, ev := range e.events() {
				if ev.Kind == "step_ended" && ev.Step == tc.tid {
					return true
				}
			}
			return false
		})
		// Ended, not removed: the cgroup and its counters are still there
		// and the daemon still lists the step.
		time.Sleep(200 * time.Millisecond)
		cg := cgroupfs.Cgroup{Path: st.Cgroup}
		if _, err := cg.FlatKeyed("memory.events"); err != nil {
			t.Fatalf("%s: counters gone after the step ended: %v", tc.tid, err)
		}
		if _, err := c.Step("s1", tc.tid); err != nil {
			t.Fatalf("%s: daemon forgot the ended step: %v", tc.tid, err)
		}
		if err := c.DeleteStep("s1", tc.tid); err != nil {
			t.Fatalf("%s: delete: %v", tc.tid, err)
		}
		if cg.Exists() {
			t.Fatalf("%s: cgroup left after delete", tc.tid)
		}
	}
	for _, ev := range e.events() {
		if ev.Kind == "step_removed" && ev.Cause == "its processes exited" {
			t.Errorf("step %s removed by the daemon despite keep_ended", ev.Step)
		}
	}
}
