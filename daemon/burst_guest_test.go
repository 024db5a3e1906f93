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

// Burst credit in mainline mode: the first pressure of an episode raises
// memory.high by the credit for burst_duration, then the profile's value
// returns. (In full mode memcg_agent_ops forgives the credit instead; see
// TestGuestFullModeVM.)
func TestGuestBurstCredit(t *testing.T) {
	if ranInVM(t) {
		return
	}
	e := newEnv(t, `
[profiles.interactive]
[profiles.tool_burst]
[profiles.tool_burst.memory]
high = "24M"
max = "400M"
burst_credit = "16M"
burst_duration = "1500ms"
oom_group = true
[profiles.tool_burst.escalation]
throttle_score = 1
clear_after = "3s"
`, `memory_mode = "mainline"`)
	_, _ = e.start()
	c := e.client()
	if _, err := c.StartSession(api.SessionRequest{ID: "s1"}); err != nil {
		t.Fatal(err)
	}
	cmd, _ := memhog.Command("mode=grow,chunk=1M,every=20ms,total=30M,hold=60s")
	cmd.Stderr = os.Stderr
	st := runStep(t, c, "s1", "b", "tool_burst", cmd)
	defer stopProc(t, cmd)
	cg := cgroupfs.Cgroup{Path: st.Cgroup}
	if v, _ := cg.Read("memory.oom.group"); v != "1" {
		t.Errorf("memory.oom.group = %q for an oom_group profile", v)
	}
	waitFor(t, 60*time.Second, "memory.high raised by the burst credit", func() bool {
		v, _ := cg.ReadLimit("memory.high")
		return v == 40<<20
	})
	waitFor(t, 10*time.Second, "memory.high back to the profile's value", func() bool {
		v, _ := cg.ReadLimit("memory.high")
		return v == 24<<20
	})
	var start, end uint64
	for _, ev := range e.events() {
		if ev.Step != "b" {
			continue
		}
		switch ev.Kind {
		case "burst_start":
			start = ev.MonoNS
			if !strings.Contains(ev.Detail, "25165824 -> 41943040") {
				t.Errorf("burst_start detail %q", ev.Detail)
			}
		case "burst_end":
			end = ev.MonoNS
		}
	}
	if start == 0 || end == 0 {
		t.Fatalf("burst events missing: start %d end %d", start, end)
	}
	if d := time.Duration(end - start); d < 1500*time.Millisecond || d > 5*time.Second {
		t.Fatalf("burst lasted %v, want about 1.5s", d)
	}
}
