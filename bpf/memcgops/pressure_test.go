package memcgops

import (
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/bpf/mempressure"
	"github.com/agentcgroup/agentcgroup/bpf/mempressure/pressuretest"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/harness/vmtest"
)

// The pressure scale, from the generated enum agc_pressure.
const (
	scoreUnit  = time.Duration(maoAgcPressureAGC_PRESSURE_UNIT_NS)
	staleAfter = time.Duration(maoAgcPressureAGC_PRESSURE_STALE_NS)
)

// A step that thrashed, went quiet for longer than the stale window and
// breaches once more starts its new episode at the new delay: every event
// of episode 2 asks for 2 ms, so a restarted EWMA is 2 ms, while folding
// into episode 1's 300 ms would leave tens of ms after a few events.
func TestStaleEntryRestartsVM(t *testing.T) {
	if vmtest.Run(t, patched(4*time.Minute)) {
		return
	}
	o := loadAttached(t, Options{})
	cg := mkCgroup(t, "mao-stale")
	write(t, cg, "memory.high", "64M")
	write(t, cg, "memory.swap.max", "0")
	id := cgid(t, cg)
	episode := func(delayMS uint32) StepPressure {
		if err := o.SetPolicy(id, delayPolicy(delayMS)); err != nil {
			t.Fatal(err)
		}
		h := startHelper(t, cg, "touch", "MAO_MB=65", "MAO_PAUSE_MS=1000000")
		h.wait(t, nil)
		sp, ok, err := o.Pressure(id)
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		return sp
	}
	a := episode(300)
	t.Logf("episode 1 (300 ms per event): ewma %v score %d events %d", time.Duration(a.DelayEwmaNs), a.ThrashScore, a.TotalEvents)
	if a.ThrashScore != uint32(maoAgcPressureAGC_PRESSURE_MAX) {
		t.Fatalf("300 ms per event should score the maximum, got %+v", a)
	}
	time.Sleep(staleAfter + 500*time.Millisecond)
	b := episode(2)
	n := b.TotalEvents - a.TotalEvents
	t.Logf("episode 2 (2 ms per event): %d events, ewma %v score %d", n, time.Duration(b.DelayEwmaNs), b.ThrashScore)
	if n == 0 {
		t.Fatal("episode 2 recorded no event")
	}
	if got := time.Duration(b.DelayEwmaNs); got > 2*time.Millisecond {
		t.Fatalf("ewma %v after the quiet spell: episode 1 was folded in instead of restarting at 2 ms", got)
	}
	if want := uint32(2 * time.Millisecond / scoreUnit); b.ThrashScore > want {
		t.Fatalf("score %d after the quiet spell, want at most %d", b.ThrashScore, want)
	}
}

// BenchmarkPressureScoresFull is BenchmarkPressureScores (bpf/mempressure)
// in full mode: the patched kernel with memcg_agent_ops attached, the
// steps in the background class with its default delay curve (as the
// eval's neighbours), and the probe alongside as the daemon runs it. The
// scheduler's view is the probe's step_pressure (the measured time in the
// handler); the daemon's is the larger of that and the score of the delays
// memcg_agent_ops asked for, kept in its own map. Run:
//
//	go test -run '^$' -bench BenchmarkPressureScoresFull -benchtime 1x ./bpf/memcgops/
func BenchmarkPressureScoresFull(b *testing.B) {
	if vmtest.Run(b, patched(10*time.Minute)) {
		return
	}
	pressuretest.EnableSwap(b, 384)
	o, err := Load(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	if err := o.Attach(); err != nil {
		b.Fatal(err)
	}
	p, err := mempressure.Load(mempressure.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	if err := cgroupfs.EnableControllers(cgroupRoot, "", "memory"); err != nil {
		b.Fatal(err)
	}
	env := pressuretest.Env{Mode: "full", Parent: cgroupRoot, ScoreUnit: scoreUnit,
		Register: func(id uint64) error {
			if err := p.PolicyMap().Put(id, &mempressure.StepPolicy{Class: ClassBackground}); err != nil {
				return err
			}
			return o.SetPolicy(id, StepPolicy{Class: ClassBackground})
		},
		Read: func(id, now uint64) (pressuretest.Reading, bool) {
			var r pressuretest.Reading
			// The probe's entry: what the scheduler reads. The daemon
			// keeps the last score while a task is inside the handler.
			mp, probe, _ := mempressure.Lookup(p.PressureMap(), id)
			if probe {
				r.Sched = mempressure.Score(mp, now)
				r.Score = r.Sched
				if p.InFlight(id) > 0 {
					r.Score = max(mp.ThrashScore, 1)
				}
				r.ProbeEvents, r.ProbeDelayNs = mp.TotalEvents, mp.TotalDelayNs
			}
			// ... and takes the requested delays' score when it is larger,
			// holding it while a task sleeps off the delay it was given.
			var sp mempressure.StepPressure
			ops := o.PressureMap().Lookup(id, &sp) == nil
			if ops {
				r.Events, r.DelayNs = sp.TotalEvents, sp.TotalDelayNs
				rs := mempressure.Score(sp, now)
				st, ok, _ := o.Cgroup(id)
				if ok && st.LastDelayMs > 0 && now < sp.LastUpdateNs+uint64(st.LastDelayMs)*1e6 {
					rs = max(sp.ThrashScore, 1)
				}
				r.Score = max(r.Score, rs)
			}
			return r, ops || probe
		}}
	b.Log(pressuretest.TableHeader())
	for _, c := range pressuretest.Cases() {
		r := pressuretest.Measure(b, env, c)
		b.Log(r.Row(c.High))
		b.ReportMetric(float64(r.P50), c.Name+"-p50")
		b.ReportMetric(float64(r.P99), c.Name+"-p99")
	}
}
