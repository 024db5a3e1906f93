package escalate

import (
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/daemon/config"
)

const ms = time.Millisecond

func esc() config.Escalation {
	return config.Escalation{ThrottleScore: 10, FreezeScore: 100, FreezeAfter: config.Duration(500 * ms),
		ThawAfter: config.Duration(time.Second), MaxFreezes: 1, ClearAfter: config.Duration(300 * ms)}
}

// drive feeds a constant input every 20 ms for d and returns the transitions.
func drive(m *Machine, now *time.Duration, d time.Duration, in Input) []Transition {
	var out []Transition
	for end := *now + d; *now < end; *now += 20 * ms {
		in.Now = *now
		if t := m.Step(in); t != nil {
			out = append(out, *t)
		}
	}
	return out
}

// episode drives one severe episode into a freeze and its thaw.
func episode(t *testing.T, m *Machine, now *time.Duration, hot Input) {
	t.Helper()
	tr := drive(m, now, 600*ms, hot)
	if len(tr) == 0 || tr[len(tr)-1].To != SoftPaused || tr[len(tr)-1].Action != Freeze {
		t.Fatalf("severe pressure must end in a freeze: %+v", tr)
	}
	// Frozen: the step allocates nothing, so its score is stale (0).
	tr = drive(m, now, 1100*ms, Input{Probe: true})
	if len(tr) != 1 || tr[0].To != Throttled || tr[0].Action != Thaw {
		t.Fatalf("thaw: %+v", tr)
	}
}

func TestThrottleFreezeThawNoKillWithoutCause(t *testing.T) {
	now := time.Second
	m := New(esc(), now)
	hot := Input{Probe: true, Score: 300}
	tr := drive(m, &now, 600*ms, hot)
	if len(tr) != 2 || tr[0].To != Throttled || tr[1].To != SoftPaused || tr[1].Action != Freeze {
		t.Fatalf("first episode: %+v", tr)
	}
	drive(m, &now, 1100*ms, Input{Probe: true})
	// max_freezes = 1 is spent from here on; neither the step's hard limit
	// nor other steps are involved, so it cycles and is never killed.
	for i := 0; i < 10; i++ {
		episode(t, m, &now, hot)
	}
	if m.Freezes != 11 || m.State != Throttled {
		t.Fatalf("after 11 episodes: state %v, %d freezes", m.State, m.Freezes)
	}
	tr = drive(m, &now, 600*ms, hot)
	if len(tr) != 1 || tr[0].Action != Freeze || !strings.Contains(tr[0].Cause, "no kill cause") {
		t.Fatalf("spent max_freezes without a cause must freeze again, saying why: %+v", tr)
	}
}

func TestKillOnMaxGrowth(t *testing.T) {
	now := time.Second
	m := New(esc(), now)
	episode(t, m, &now, Input{Probe: true, Score: 300})
	tr := drive(m, &now, 600*ms, Input{Probe: true, Score: 300, MaxDelta: 3})
	if len(tr) != 1 || tr[0].To != Killed || tr[0].Action != Kill || tr[0].Kill != KillMax {
		t.Fatalf("max growth after max_freezes must kill: %+v", tr)
	}
	if !strings.HasPrefix(tr[0].Cause, "memory.events max +") {
		t.Fatalf("cause %q does not start with the counter", tr[0].Cause)
	}
	if tr = drive(m, &now, time.Second, Input{Probe: true, Score: 300, MaxDelta: 1}); len(tr) != 0 {
		t.Fatalf("KILLED is final: %+v", tr)
	}
}

func TestKillOnOOMGrowth(t *testing.T) {
	now := time.Second
	m := New(esc(), now)
	episode(t, m, &now, Input{Probe: true, Score: 300})
	// One OOM kill inside the step (the kernel killed its largest task),
	// then the step stays under severe pressure.
	tr := drive(m, &now, 20*ms, Input{Probe: true, Score: 300, MaxDelta: 40, OOMDelta: 1, OOMKillDelta: 1})
	tr = append(tr, drive(m, &now, 600*ms, Input{Probe: true, Score: 300})...)
	if len(tr) != 1 || tr[0].Action != Kill || tr[0].Kill != KillOOM {
		t.Fatalf("oom growth after max_freezes must kill: %+v", tr)
	}
	if want := "memory.events max +40, oom +1, oom_kill +1"; !strings.HasPrefix(tr[0].Cause, want) {
		t.Fatalf("cause %q, want prefix %q", tr[0].Cause, want)
	}
}

func TestKillOnOthersHurt(t *testing.T) {
	p := esc()
	p.OthersPSIAvg10 = 5
	now := time.Second
	m := New(p, now)
	hurt := Input{Probe: true, Score: 300, OthersPSIAvg10: 20}
	tr := drive(m, &now, 600*ms, hurt)
	if len(tr) != 2 || tr[1].Action != Freeze {
		t.Fatalf("first episode: %+v", tr)
	}
	drive(m, &now, 1100*ms, Input{Probe: true, OthersPSIAvg10: 1})
	tr = drive(m, &now, 600*ms, hurt)
	if len(tr) != 1 || tr[0].Action != Kill || tr[0].Kill != KillOthersHurt {
		t.Fatalf("harm to others after max_freezes must kill: %+v", tr)
	}
	if !strings.HasPrefix(tr[0].Cause, "others' memory.pressure avg10 20.00 >= 5.00") {
		t.Fatalf("cause %q", tr[0].Cause)
	}
}

func TestOthersBelowThresholdNoKill(t *testing.T) {
	p := esc()
	p.OthersPSIAvg10 = 5
	now := time.Second
	m := New(p, now)
	drive(m, &now, 600*ms, Input{Probe: true, Score: 300, OthersPSIAvg10: 20})
	drive(m, &now, 1100*ms, Input{Probe: true})
	for _, tr := range drive(m, &now, 10*time.Second, Input{Probe: true, Score: 300, OthersPSIAvg10: 4}) {
		if tr.Action == Kill || tr.Action == Freeze {
			t.Fatalf("others below the threshold: %+v", tr)
		}
	}
}

// Growth at the hard limit before a freeze is no evidence about the step
// after it.
func TestMaxGrowthBeforeFreezeDoesNotKill(t *testing.T) {
	now := time.Second
	m := New(esc(), now)
	episode(t, m, &now, Input{Probe: true, Score: 300, MaxDelta: 5})
	for _, tr := range drive(m, &now, 5*time.Second, Input{Probe: true, Score: 300}) {
		if tr.Action == Kill {
			t.Fatalf("killed on growth from before the freeze: %+v", tr)
		}
	}
}

// The growth that starts an episode counts for it: a step restored with
// its freezes spent is killed when it keeps up severe pressure.
func TestMaxGrowthThatStartsTheEpisodeCounts(t *testing.T) {
	now := time.Second
	m := Restore(esc(), Running, 1, now)
	tr := drive(m, &now, 20*ms, Input{Probe: true, Score: 300, MaxDelta: 1})
	tr = append(tr, drive(m, &now, 600*ms, Input{Probe: true, Score: 300})...)
	if len(tr) != 2 || tr[0].To != Throttled || tr[1].Kill != KillMax {
		t.Fatalf("%+v", tr)
	}
}

// A step at its memory.max with no memory.high (no score, no high events)
// still climbs the ladder.
func TestAtLimitAloneEscalates(t *testing.T) {
	p := esc()
	p.OthersPSIAvg10 = 5 // others unaffected: the hard limit alone drives it
	now := time.Second
	m := New(p, now)
	at := Input{MaxDelta: 2}
	tr := drive(m, &now, 600*ms, at)
	if len(tr) != 2 || tr[0].Cause != "memory.events max +2" || tr[1].Action != Freeze {
		t.Fatalf("%+v", tr)
	}
	drive(m, &now, 1100*ms, Input{})
	tr = drive(m, &now, 600*ms, at)
	if len(tr) != 1 || tr[0].Kill != KillMax {
		t.Fatalf("%+v", tr)
	}
}

func TestMaxFreezesZeroNeverKills(t *testing.T) {
	p := esc()
	p.MaxFreezes = 0
	now := time.Second
	m := New(p, now)
	for i := 0; i < 3; i++ {
		episode(t, m, &now, Input{Probe: true, Score: 300, MaxDelta: 1, OOMKillDelta: 1})
	}
}

func TestMildPressureOnlyThrottles(t *testing.T) {
	now := time.Duration(0)
	m := New(esc(), now)
	tr := drive(m, &now, 5*time.Second, Input{Probe: true, Score: 50})
	if len(tr) != 1 || tr[0].To != Throttled {
		t.Fatalf("%+v", tr)
	}
	tr = drive(m, &now, 400*ms, Input{Probe: true})
	if len(tr) != 1 || tr[0].To != Running {
		t.Fatalf("clears: %+v", tr)
	}
}

func TestExemptNeverFrozen(t *testing.T) {
	p := esc()
	p.Exempt = true
	p.OthersPSIAvg10 = 5
	now := time.Duration(0)
	m := New(p, now)
	worst := Input{Probe: true, Score: 1000, MaxDelta: 10, OOMDelta: 1, OOMKillDelta: 1, OthersPSIAvg10: 90}
	for _, tr := range drive(m, &now, 10*time.Second, worst) {
		if tr.Action == Freeze || tr.Action == Kill {
			t.Fatalf("exempt step escalated: %+v", tr)
		}
	}
}

func TestOthersPressureGatesFreezeAndThaw(t *testing.T) {
	p := esc()
	p.OthersPSIAvg10 = 5
	now := time.Duration(0)
	m := New(p, now)
	tr := drive(m, &now, 2*time.Second, Input{Probe: true, Score: 500, OthersPSIAvg10: 1})
	if len(tr) != 1 || tr[0].To != Throttled {
		t.Fatalf("no harm to others must not freeze: %+v", tr)
	}
	tr = drive(m, &now, 40*ms, Input{Probe: true, Score: 500, OthersPSIAvg10: 20})
	if len(tr) != 1 || tr[0].To != SoftPaused {
		t.Fatalf("harm to others freezes: %+v", tr)
	}
	if tr = drive(m, &now, 3*time.Second, Input{Probe: true, OthersPSIAvg10: 20}); len(tr) != 0 {
		t.Fatalf("must stay frozen while others suffer: %+v", tr)
	}
	tr = drive(m, &now, 40*ms, Input{Probe: true, OthersPSIAvg10: 0.5})
	if len(tr) != 1 || tr[0].Action != Thaw {
		t.Fatalf("thaw when others recover: %+v", tr)
	}
}

func TestWithoutProbeHighEventsDrive(t *testing.T) {
	now := time.Duration(0)
	m := New(esc(), now)
	tr := drive(m, &now, 600*ms, Input{HighDelta: 3})
	if len(tr) != 2 || tr[0].Cause != "memory.events high +3" || tr[1].To != SoftPaused {
		t.Fatalf("%+v", tr)
	}
}
