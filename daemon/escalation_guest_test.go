package daemon

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/memhog"
)

const escalationPolicy = `
[profiles.interactive]
[profiles.interactive.memory]
high = "256M"
max = "512M"
[profiles.interactive.escalation]
throttle_score = 50
freeze_score = 200
freeze_after = "500ms"
thaw_after = "1s"
max_freezes = 1
clear_after = "1s"

[profiles.tool_burst]
[profiles.tool_burst.memory]
high = "24M"
max = "26M"
[profiles.tool_burst.escalation]
throttle_score = 50
freeze_score = 200
freeze_after = "500ms"
thaw_after = "1s"
max_freezes = 1
clear_after = "1s"
psi_stall = "100ms"
psi_window = "1s"
`

// A memory_blowup step beside an interactive victim in the same session
// runs into its memory.max: the kernel OOM-kills the allocating process,
// which a retry loop starts again, as an agent re-running a failing build
// would. The step is throttled, frozen, thawed, throttled again and killed
// for hitting its hard limit (kill_cause max or oom); the victim is never
// frozen or killed. Without memory.oom.group the kernel kills only the
// allocator, so the daemon is the one that ends the step.
func TestGuestBlowupEscalatesVictimSpared(t *testing.T) {
	if ranInVM(t) {
		return
	}
	e := newEnv(t, escalationPolicy, "")
	d, _ := e.start()
	c := e.client()
	if _, err := c.StartSession(api.SessionRequest{ID: "s1", Labels: map[string]string{"repo": "demo"}}); err != nil {
		t.Fatal(err)
	}
	stopFile := e.dir + "/victim.stop"
	victimCmd, _ := memhog.Command("mode=steady,prefill=16M,hold=120s,stopfile=" + stopFile)
	victimCmd.Stderr = os.Stderr
	victim := runStep(t, c, "s1", "victim", "interactive", victimCmd)
	var victimFrozen atomic.Bool
	stopWatch := make(chan struct{})
	go func() {
		vc := cgroupfs.Cgroup{Path: victim.Cgroup}
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if ev, err := vc.Events(); err == nil && ev.Frozen {
				victimFrozen.Store(true)
			}
		}
	}()
	hog, _ := memhog.Command("mode=grow,chunk=2M,every=10ms,total=300M,hold=60s")
	blowCmd := exec.Command("sh", "-c", `while :; do "$0" -test.run='^$'; done`, hog.Path)
	blowCmd.Env = hog.Env
	blowCmd.Stderr = os.Stderr
	blow := runStep(t, c, "s1", "blowup", "tool_burst", blowCmd)
	blowErr := make(chan error, 1)
	go func() { blowErr <- blowCmd.Wait() }()
	select {
	case err := <-blowErr:
		if sig := killedBy(err); sig != 9 {
			t.Fatalf("blowup's retry loop ended with %v, want SIGKILL from the daemon", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("blowup was not killed within 60s")
	}
	if got, err := c.Status(); err == nil {
		for _, s := range got.Steps {
			t.Logf("status: %s/%s %s events=%v score=%d", s.Session, s.Step, s.State, s.MemoryEvents, s.ThrashScore)
		}
	}
	resp, err := http.Get("http://" + d.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`agentcgroup_transitions_total{from="THROTTLED",to="KILLED"} 1`,
		`agentcgroup_transitions_total{from="THROTTLED",to="SOFT_PAUSED"} `,
		`agentcgroup_step_state{class="interactive",profile="interactive",session="s1",state="RUNNING",step="victim"} 1`,
		`agentcgroup_step_memory_events_total{class="interactive",event="high",profile="interactive",session="s1",step="victim"} 0`,
		`agentcgroup_reaction_seconds_count `,
		`agentcgroup_step_cpu_usage_seconds_total{class="interactive",profile="interactive",session="s1",step="victim"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The daemon removes a step whose processes are gone; the client's
	// delete then finds nothing, which `agentcgroup step run` accepts.
	if err := c.DeleteStep("s1", "blowup"); err != nil {
		if ae, ok := err.(*api.APIError); !ok || ae.Status != http.StatusNotFound {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(stopFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := victimCmd.Wait(); err != nil {
		t.Fatalf("victim ended with %v, want a clean exit", err)
	}
	close(stopWatch)
	if victimFrozen.Load() {
		t.Error("the victim's cgroup was seen frozen")
	}
	waitFor(t, 5*time.Second, "victim step removal after its process exited", func() bool {
		_, err := os.Stat(victim.Cgroup)
		return os.IsNotExist(err)
	})
	if _, err := os.Stat(blow.Cgroup); !os.IsNotExist(err) {
		t.Errorf("blowup cgroup left behind: %v", err)
	}

	evs := e.events()
	for _, ev := range evs {
		if ev.Kind == "transition" || ev.Kind == "burst_start" || ev.Kind == "step_removed" {
			t.Logf("event: %s %s %s->%s %s %q high=%d score=%d reaction=%v", ev.Kind, ev.Step, ev.From, ev.To, ev.Action, ev.Cause, ev.MemoryEvents["high"], ev.ThrashScore, time.Duration(ev.ReactionNS))
		}
	}
	got := transitions(evs, "blowup")
	var seq []string
	for _, tr := range got {
		seq = append(seq, tr.From+">"+tr.To)
		if tr.MemoryEvents["high"] == 0 {
			t.Errorf("transition %s>%s logged memory.events high=0", tr.From, tr.To)
		}
		if tr.MonoNS == 0 || tr.Cause == "" {
			t.Errorf("transition without timestamp or cause: %+v", tr)
		}
		if tr.Error != "" {
			t.Errorf("transition action failed: %+v", tr)
		}
	}
	// Throttle, freeze and thaw, then the kill. How many cycles come
	// between varies: a decision that falls after a thaw but before the
	// step met its limit again freezes it once more, and a lull in the
	// signals the daemon sees can clear it back to RUNNING for a while.
	all := strings.Join(seq, " ")
	if !strings.HasPrefix(all, "RUNNING>THROTTLED ") || !strings.HasSuffix(all, " THROTTLED>KILLED") ||
		!strings.Contains(all, "THROTTLED>SOFT_PAUSED SOFT_PAUSED>THROTTLED ") || strings.Count(all, ">KILLED") != 1 {
		t.Fatalf("blowup transitions %v, want throttle, freeze, thaw, ..., kill", seq)
	}
	kill := got[len(got)-1]
	if (kill.KillCause != "max" && kill.KillCause != "oom") || !strings.HasPrefix(kill.Cause, "memory.events ") {
		t.Fatalf("kill cause %q (%s), want max or oom from memory.events", kill.KillCause, kill.Cause)
	}
	if kill.MemoryEvents["max"] == 0 {
		t.Errorf("kill logged memory.events max=0: %v", kill.MemoryEvents)
	}
	for i := 1; i < len(got); i++ {
		if got[i].MonoNS < got[i-1].MonoNS {
			t.Errorf("timestamps not monotonic: %d after %d", got[i].MonoNS, got[i-1].MonoNS)
		}
	}
	for _, tr := range transitions(evs, "victim") {
		if tr.To == "SOFT_PAUSED" || tr.To == "KILLED" {
			t.Errorf("victim escalated: %+v", tr)
		}
	}
}
