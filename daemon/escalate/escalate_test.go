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

// looks runs the machine the way the daemon does without kernel signals:
// it observes only at the times NextLook asks for, until end, and returns
// the number of looks and the transitions with their times.
func looks(m *Machine, now *time.Duration, end, tick time.Duration, at func(time.Duration) Input) (int, []Transition, []time.Duration) {
	var tr []Transition
	var when []time.Duration
	n := 0
	for {
		next, ok := m.NextLook(*now, tick)
		if !ok || next > end {
			return n, tr, when
		}
		if next < *now {
			panic("NextLook went back in time")
		}
		*now = next
		in := at(*now)
		in.Now = *now
		n++
		if t := m.Step(in); t != nil {
			tr, when = append(tr, *t), append(when, *now)
		}
	}
}

func TestNextLookThrottledExemptStepLooksOncePerClearAfter(t *testing.T) {
	p := esc()
	p.Exempt, p.ClearAfter = true, config.Duration(time.Second)
	now := time.Second
	m := New(p, now)
	// Pressure until 31 s: a fresh score at every look.
	stop := 31 * time.Second
	pressure := func(at time.Duration) Input {
		if at < stop {
			return Input{Probe: true, Score: 300}
		}
		return Input{Probe: true}
	}
	if tr := m.Step(Input{Now: now, Probe: true, Score: 300}); tr == nil || tr.To != Throttled {
		t.Fatalf("no throttle: %+v", tr)
	}
	n, tr, when := looks(m, &now, 40*time.Second, 100*ms, pressure)
	if len(tr) != 1 || tr[0].To != Running {
		t.Fatalf("transitions %+v", tr)
	}
	// 30 s of pressure at one look per clear_after, then the clearing look.
	if n > 32 {
		t.Errorf("%d looks in 30 s of pressure: want one per clear_after (about 31)", n)
	}
	if when[0] < stop || when[0] > stop+time.Second+100*ms {
		t.Errorf("cleared at %v, pressure ended at %v: want within clear_after and a tick", when[0], stop)
	}
}

func TestNextLookHighGrowthDatedByTheKernelClearsOnTime(t *testing.T) {
	p := esc()
	p.Exempt, p.ClearAfter = true, config.Duration(time.Second)
	now := time.Second
	m := New(p, now)
	m.Step(Input{Now: now, Probe: true, Score: 300})
	// The last throttle happened 10 ms after that look; the next look finds
	// the score stale but memory.events high grown, dated by the kernel.
	last := now + 10*ms
	n, tr, when := looks(m, &now, 5*time.Second, 100*ms, func(at time.Duration) Input {
		if at < last+time.Second {
			return Input{Probe: true, HighDelta: 3, PressureAt: last}
		}
		return Input{Probe: true}
	})
	if len(tr) != 1 || tr[0].To != Running || when[0] > last+time.Second+100*ms {
		t.Fatalf("after %d looks: %+v at %v; want RUNNING by %v", n, tr, when, last+time.Second+100*ms)
	}
}

func TestNextLookFreezeWithinAQuarterOfFreezeAfter(t *testing.T) {
	p := esc()
	p.FreezeAfter, p.ClearAfter = config.Duration(2*time.Second), config.Duration(time.Second)
	now := time.Second
	m := New(p, now)
	m.Step(Input{Now: now, Probe: true, Score: 20}) // mild: throttled only
	severeFrom := 7*time.Second + 3*ms
	n, tr, when := looks(m, &now, severeFrom+p.FreezeAfter.D()+p.FreezeAfter.D()/4+100*ms, 100*ms, func(at time.Duration) Input {
		if at >= severeFrom {
			return Input{Probe: true, Score: 300}
		}
		return Input{Probe: true, Score: 20}
	})
	if len(tr) == 0 || tr[0].To != SoftPaused {
		t.Fatalf("no freeze: %+v", tr)
	}
	late := when[0] - (severeFrom + p.FreezeAfter.D())
	if late < 0 || late > p.FreezeAfter.D()/4+100*ms {
		t.Errorf("frozen %v after severity held freeze_after: want at most freeze_after/4 + tick", late)
	}
	// Mild pressure for 6 s sampled at freeze_after/4 = 500 ms, severe
	// for 2 s at the tick.
	if n > 6*2+2*10+4 {
		t.Errorf("%d looks: mild pressure should be sampled at freeze_after/4", n)
	}
}

func TestNextLookThawAtThawAfter(t *testing.T) {
	now := time.Second
	m := Restore(esc(), SoftPaused, 1, now)
	at, ok := m.NextLook(now, 100*ms)
	if !ok || at != now+time.Second {
		t.Fatalf("frozen step's next look %v %v, want the thaw at %v", at, ok, now+time.Second)
	}
	if _, ok := New(esc(), now).NextLook(now, 100*ms); ok {
		t.Fatal("a RUNNING step waits for kernel signals only")
	}
}

func TestNodeKillOnlyKillable(t *testing.T) {
	exempt, never := esc(), esc()
	exempt.Exempt = true
	never.MaxFreezes = 0
	for name, p := range map[string]config.Escalation{"exempt": exempt, "max_freezes 0": never} {
		if m := New(p, 0); m.Killable() || m.NodeKill(time.Second, "node low") != nil || m.State != Running {
			t.Errorf("%s: the node guard may not kill it (state %v)", name, m.State)
		}
	}
	// From any live state, frozen included; once, since a killed step is
	// no longer Killable.
	now := time.Second
	m := New(esc(), now)
	drive(m, &now, 600*ms, Input{Probe: true, Score: 300})
	if m.State != SoftPaused || !m.Killable() {
		t.Fatalf("setup: state %v", m.State)
	}
	tr := m.NodeKill(now, "MemAvailable 40 MiB <= floor 48 MiB")
	if tr == nil || tr.From != SoftPaused || tr.To != Killed || tr.Action != Kill || tr.Kill != KillNodeLow || m.State != Killed {
		t.Fatalf("node kill: %+v, state %v", tr, m.State)
	}
	if m.NodeKill(now, "again") != nil {
		t.Fatal("a killed step was killed again")
	}
}
