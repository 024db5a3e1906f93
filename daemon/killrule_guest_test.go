package daemon

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/memhog"
)

// A step far over its memory.high but far below its memory.max, with no
// other step suffering, only harms itself: it is throttled and frozen again
// and again once max_freezes is spent, and never killed.
const selfHarmPolicy = `
[profiles.tool_burst]
[profiles.tool_burst.memory]
high = "24M"
max = "400M"
oom_group = true
[profiles.tool_burst.escalation]
throttle_score = 50
freeze_score = 200
freeze_after = "500ms"
thaw_after = "1s"
max_freezes = 1
clear_after = "1s"
`

func TestGuestPressureAloneNeverKills(t *testing.T) {
	if ranInVM(t) {
		return
	}
	e := newEnv(t, selfHarmPolicy, "")
	e.start()
	c := e.client()
	if _, err := c.StartSession(api.SessionRequest{ID: "s1"}); err != nil {
		t.Fatal(err)
	}
	hog, _ := memhog.Command("mode=grow,chunk=2M,every=10ms,total=300M,hold=120s")
	hog.Stderr = os.Stderr
	st := runStep(t, c, "s1", "hog", "tool_burst", hog)
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = hog.Wait(); close(exited) }()
	defer func() {
		_ = hog.Process.Kill()
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			t.Error("hog did not die within 20s of SIGKILL")
		}
	}()
	// Under the old rule the second severe episode killed it (about 3 s in).
	freezes := func() (n int, kill bool) {
		for _, ev := range transitions(e.events(), "hog") {
			if ev.To == "SOFT_PAUSED" {
				n++
			}
			kill = kill || ev.To == "KILLED"
		}
		return n, kill
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		n, kill := freezes()
		if kill {
			t.Fatalf("killed without a kill cause after %d freezes", n)
		}
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d freezes in 90s; the hog should cycle", n)
		}
		select {
		case <-exited:
			t.Fatalf("hog ended: %v", waitErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
	var again bool
	for _, ev := range transitions(e.events(), "hog") {
		t.Logf("event: %s->%s %s %q", ev.From, ev.To, ev.Action, ev.Cause)
		if ev.To == "SOFT_PAUSED" && strings.Contains(ev.Cause, "no kill cause") {
			again = true
		}
		if ev.MemoryEvents["max"] != 0 || ev.MemoryEvents["oom_kill"] != 0 {
			t.Errorf("the hog met its memory.max; the test needs it below: %v", ev.MemoryEvents)
		}
	}
	if !again {
		t.Error("no freeze after max_freezes says why it was not a kill")
	}
	s, err := c.Step("s1", "hog")
	if err != nil || s.State == "KILLED" {
		t.Fatalf("step after the cycles: %+v %v", s, err)
	}
	if ev, err := (cgroupfs.Cgroup{Path: st.Cgroup}).Events(); err != nil || !ev.Populated {
		t.Fatalf("hog's cgroup emptied: %+v %v", ev, err)
	}
}
