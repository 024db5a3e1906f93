package mempressure

import (
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/bpf/mempressure/pressuretest"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/cilium/ebpf"
)

// PressureReader reads a step_pressure map as the daemon and the scheduler
// do: stale entries count 0, but the daemon keeps the last score while a
// task is still inside the throttle handler (inFlight, may be nil).
func PressureReader(m *ebpf.Map, inFlight func(uint64) uint64) func(id, now uint64) (pressuretest.Reading, bool) {
	return func(id, now uint64) (pressuretest.Reading, bool) {
		sp, ok, err := Lookup(m, id)
		if err != nil || !ok {
			return pressuretest.Reading{}, false
		}
		r := pressuretest.Reading{Sched: Score(sp, now), Events: sp.TotalEvents, DelayNs: sp.TotalDelayNs}
		r.Score = r.Sched
		if inFlight != nil && inFlight(id) > 0 {
			r.Score = max(sp.ThrashScore, 1)
		}
		return r, true
	}
}

// BenchmarkPressureScores measures the thrash_score distribution the probe
// produces on the stock kernel (mainline mode) for the workload shapes of
// the shipped scenarios (pressuretest.Cases), and logs it as the table in
// docs/PRESSURE.md, from which agentcgroup.h's default thresholds are
// chosen. Reported metrics: p50 and p99 score per case. Run:
//
//	go test -run '^$' -bench BenchmarkPressureScores -benchtime 1x ./bpf/mempressure/
func BenchmarkPressureScores(b *testing.B) {
	if ranInVMFor(b, 10*time.Minute) {
		return
	}
	pressuretest.EnableSwap(b, 384)
	p, err := Load(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	if err := cgroupfs.EnableControllers("/sys/fs/cgroup", "", "memory"); err != nil {
		b.Fatal(err)
	}
	env := pressuretest.Env{Mode: "mainline", Parent: "/sys/fs/cgroup", ScoreUnit: ScoreUnit,
		Register: func(id uint64) error { return p.PolicyMap().Put(id, &StepPolicy{Class: 3}) },
		Read:     PressureReader(p.PressureMap(), p.InFlight)}
	b.Log(pressuretest.TableHeader())
	for _, c := range pressuretest.Cases() {
		r := pressuretest.Measure(b, env, c)
		b.Log(r.Row(c.High))
		b.ReportMetric(float64(r.P50), c.Name+"-p50")
		b.ReportMetric(float64(r.P99), c.Name+"-p99")
	}
}
