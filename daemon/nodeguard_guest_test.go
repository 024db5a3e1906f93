package daemon

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/eventlog"
	"github.com/agentcgroup/agentcgroup/daemon/memhog"
)

// nodeGuardPolicy: background steps may be killed (max_freezes set, no
// memory.high to throttle them first); interactive ones are exempt.
const nodeGuardPolicy = `
[profiles.interactive]
[profiles.interactive.escalation]
exempt = true

[profiles.background]
[profiles.background.escalation]
max_freezes = 1
`

// memAvailable reads MemAvailable in bytes, as the guard does.
func memAvailable(t *testing.T) uint64 {
	t.Helper()
	g := &nodeGuard{}
	defer g.close()
	v, err := g.available()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The guard kills the largest killable step once MemAvailable reaches the
// floor, before the hog has taken all it asked for, and leaves a smaller
// killable step and a larger exempt one alone.
func TestGuestNodeGuardKillsLargestKillable(t *testing.T) {
	if ranInVM(t) {
		return
	}
	// Growth that would take the node 96 MiB below its floor: 56 MiB
	// held by the first two steps, then a 200 MiB hog, against a floor
	// 160 MiB below what is available now.
	floor := memAvailable(t) - 160<<20
	e := newEnv(t, nodeGuardPolicy, fmt.Sprintf("node_available_floor = %d", floor))
	e.start()
	c := e.client()
	if _, err := c.StartSession(api.SessionRequest{ID: "s1"}); err != nil {
		t.Fatal(err)
	}
	// start runs a memhog step; the channel closes when it exits, with
	// its error in *err.
	start := func(tid, class, spec string, err *error) chan struct{} {
		cmd, e := memhog.Command(spec)
		if e != nil {
			t.Fatal(e)
		}
		cmd.Stderr = os.Stderr
		runStep(t, c, "s1", tid, class, cmd)
		exited := make(chan struct{})
		go func() { *err = cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		return exited
	}
	var smallErr, exemptErr, bigErr error
	smallDone := start("small", "background", "mode=grow,chunk=2M,every=5ms,total=16M,hold=120s", &smallErr)
	exemptDone := start("exempt", "interactive", "mode=grow,chunk=2M,every=5ms,total=40M,hold=120s", &exemptErr)
	waitFor(t, 30*time.Second, "small and exempt steps at their size", func() bool {
		a, _ := c.Step("s1", "small")
		b, _ := c.Step("s1", "exempt")
		return a.MemoryCurrent >= 16<<20 && b.MemoryCurrent >= 40<<20
	})
	if st, _ := c.Status(); st.NodeGuard == nil || st.NodeGuard.Kills != 0 || st.NodeGuard.AvailableBytes <= floor {
		t.Fatalf("before the hog: %+v", st.NodeGuard)
	}
	bigDone := start("big", "background", "mode=grow,chunk=2M,every=10ms,total=200M,hold=120s", &bigErr)
	select {
	case <-bigDone:
		if sig := killedBy(bigErr); sig != 9 {
			t.Fatalf("big step ended with %v, want SIGKILL", bigErr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the guard did not kill the growing step within 60s")
	}
	// The transition is logged once the kill's wait for the empty cgroup
	// returns, which can be after the hog's exit is seen here.
	var tr []eventlog.Event
	waitFor(t, 10*time.Second, "the big step's kill logged", func() bool {
		tr = transitions(e.events(), "big")
		return len(tr) > 0 && tr[len(tr)-1].To == "KILLED"
	})
	if tr[len(tr)-1].KillCause != "node_low" {
		t.Fatalf("big step's transitions: %+v", tr)
	}
	t.Logf("kill: %s (%s)", tr[len(tr)-1].Cause, tr[len(tr)-1].Detail)
	for name, done := range map[string]chan struct{}{"small": smallDone, "exempt": exemptDone} {
		select {
		case <-done:
			t.Errorf("%s step ended: small %v, exempt %v", name, smallErr, exemptErr)
		default:
		}
		if tr := transitions(e.events(), name); len(tr) != 0 {
			t.Errorf("%s step escalated: %+v", name, tr)
		}
	}
	// The look that killed read MemAvailable before the kill freed memory;
	// the next, a tick later, sees it back above the floor.
	var st api.Status
	waitFor(t, 10*time.Second, "a look after the kill above the floor", func() bool {
		var err error
		st, err = c.Status()
		return err == nil && st.NodeGuard != nil && st.NodeGuard.AvailableBytes > floor
	})
	t.Logf("node guard: %+v", *st.NodeGuard)
	if st.NodeGuard.Kills != 1 {
		t.Fatalf("%d kills, want 1", st.NodeGuard.Kills)
	}
}
