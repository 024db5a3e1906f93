package escalate

import (
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

func TestThrottleFreezeThawKill(t *testing.T) {
	now := time.Second
	m := New(esc(), now)
	hot := Input{Probe: true, Score: 300}
	tr := drive(m, &now, 600*ms, hot)
	if len(tr) != 2 || tr[0].To != Throttled || tr[1].To != SoftPaused || tr[1].Action != Freeze {
		t.Fatalf("first episode: %+v", tr)
	}
	// Frozen: the step allocates nothing, so its score is stale (0).
	tr = drive(m, &now, 1100*ms, Input{Probe: true})
	if len(tr) != 1 || tr[0].To != Throttled || tr[0].Action != Thaw {
		t.Fatalf("thaw: %+v", tr)
	}
	tr = drive(m, &now, 600*ms, hot)
	if len(tr) != 1 || tr[0].To != Killed || tr[0].Action != Kill {
		t.Fatalf("second episode must kill after max_freezes=1: %+v", tr)
	}
	if tr = drive(m, &now, time.Second, hot); len(tr) != 0 {
		t.Fatalf("KILLED is final: %+v", tr)
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
	now := time.Duration(0)
	m := New(p, now)
	for _, tr := range drive(m, &now, 10*time.Second, Input{Probe: true, Score: 1000}) {
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
