package daemon

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/agentcgroup/agentcgroup/bpf/flatcg"
	"github.com/agentcgroup/agentcgroup/bpf/mempressure"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/memhog"
)

// With the scheduler loaded on the daemon's maps, a step thrashing over
// memory.high gets the scheduler's thrash penalty (visible in its per-cgroup
// stats) through the probe's step_pressure entry; its sibling does not.
func TestGuestSchedulerPenalizesThrashingStep(t *testing.T) {
	if ranInVM(t) {
		return
	}
	e := newEnv(t, `
[profiles.interactive]
[profiles.tool_burst]
[profiles.tool_burst.memory]
high = "24M"
max = "400M"
`, "scheduler = true")
	var sched *flatcg.Scheduler
	d, err := New(Options{ConfigPath: e.policy, Scheduler: func(p, pr *ebpf.Map) (io.Closer, error) {
		s, err := flatcg.Load(flatcg.Config{PolicyMap: p, PressureMap: pr})
		sched = s
		return s, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-d.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	if st, _ := flatcg.State(); st != "enabled" {
		t.Fatalf("sched_ext state %q after the daemon loaded the scheduler", st)
	}
	c := e.client()
	if _, err := c.StartSession(api.SessionRequest{ID: "s1"}); err != nil {
		t.Fatal(err)
	}
	stop := e.dir + "/stop"
	victimCmd, _ := memhog.Command("mode=steady,prefill=8M,hold=120s,stopfile=" + stop)
	victim := runStep(t, c, "s1", "victim", "interactive", victimCmd)
	blowCmd, _ := memhog.Command("mode=grow,chunk=2M,every=10ms,total=200M,hold=60s")
	blowCmd.Stderr = os.Stderr
	blow := runStep(t, c, "s1", "blowup", "tool_burst", blowCmd)
	defer stopProc(t, blowCmd)

	var pen uint64
	for end := time.Now().Add(90 * time.Second); pen == 0; time.Sleep(20 * time.Millisecond) {
		if st, err := sched.CgroupStatsOf(blow.CgroupID); err == nil {
			pen = st.Penalties
		}
		if time.Now().After(end) {
			state, _ := flatcg.State()
			ex, exited, _ := sched.Exited()
			sp, ok, _ := mempressure.Lookup(d.pressureMap, blow.CgroupID)
			t.Fatalf("no thrash penalty on the blowup step within 90s; sched_ext state %q (exited %v: %v); pressure entry %v %+v",
				state, exited, ex, ok, sp)
		}
	}
	vs, err := sched.CgroupStatsOf(victim.CgroupID)
	if err != nil {
		t.Fatal(err)
	}
	bs, _ := sched.CgroupStatsOf(blow.CgroupID)
	t.Logf("blowup: %+v; victim: %+v", bs, vs)
	if vs.Penalties != 0 {
		t.Fatalf("victim penalized %d times", vs.Penalties)
	}
	os.WriteFile(stop, nil, 0o644)
	if err := victimCmd.Wait(); err != nil {
		t.Fatal(err)
	}
}
