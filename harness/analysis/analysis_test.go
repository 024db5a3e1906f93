package analysis_test

import (
	"math"
	"reflect"
	"testing"

	"github.com/agentcgroup/agentcgroup/harness/analysis"
	"github.com/agentcgroup/agentcgroup/harness/analysis/analysistest"
	"github.com/agentcgroup/agentcgroup/harness/plan"
)

func TestAnalyzeSynthetic(t *testing.T) {
	m := analysistest.Default()
	m.Fail = map[string]bool{"mem-only.cpu.r01": true}
	dir, err := analysistest.WriteRun(t.TempDir(), 4, m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := analysis.Analyze(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Planned != 4*3*4 || len(s.Trials) != s.Planned-1 {
		t.Fatalf("planned %d, usable %d", s.Planned, len(s.Trials))
	}
	if len(s.Failed) != 1 || s.Failed[0].ID != "mem-only.cpu.r01" {
		t.Errorf("failed = %v", s.Failed)
	}
	if r := s.Row("mem-only", "cpu", "chat.p99_ms"); r == nil || r.Est.N != 3 {
		t.Errorf("failed trial should leave 3 repetitions: %+v", r)
	}

	// Baseline: neighbours hurt; the slowdown interval excludes 1.
	sd := s.Row("baseline", "cpu", "chat.slowdown_mean")
	// Expected mean ratio: 3000*(1+0.02*14) / (2000*(1+0.02*3.5)) = 1.79.
	if sd == nil || !(sd.Est.Lo > 1.5) || !(sd.Est.Mean > 1.6 && sd.Est.Mean < 2.0) {
		t.Errorf("baseline mean slowdown = %+v, want about 1.8 with CI above 1", sd)
	}
	// Tail: generator puts 2% of samples at 10-20x the median under
	// baseline+neighbour, so p99 sits in that band, far above solo.
	base := s.Row("baseline", "cpu", "chat.p99_ms")
	solo := s.Row("baseline", analysis.Solo, "chat.p99_ms")
	if base.Est.Mean < 20 || base.Est.Mean > 65 || solo.Est.Mean > 20 {
		t.Errorf("p99 baseline %.1f ms, solo %.1f ms", base.Est.Mean, solo.Est.Mean)
	}
	if !(base.Est.Lo <= base.Est.Mean && base.Est.Mean <= base.Est.Hi) {
		t.Errorf("CI does not bracket the mean: %+v", base.Est)
	}
	joint := s.Row("joint", "cpu", "chat.p99_ms")
	if joint.Est.Hi >= base.Est.Lo {
		t.Errorf("joint p99 %+v should be clearly below baseline %+v", joint.Est, base.Est)
	}
	// memory.events deltas come from the neighbour session's snapshot.
	if r := s.Row("joint", "mem", "neighbour.mem.high"); r == nil || r.Est.Mean != 400 {
		t.Errorf("neighbour high events = %+v", r)
	}
	if r := s.Row("baseline", "mem", "neighbour.mem.high"); r == nil || r.Est.Mean != 150 {
		t.Errorf("neighbour high events = %+v", r)
	}
	if r := s.Row("baseline", analysis.Solo, "neighbour.mem.high"); r != nil {
		t.Errorf("solo trials must not report neighbour metrics: %+v", r)
	}
	// PSI as a percentage of the 5 s between snapshots: 100000 us -> 2%.
	if r := s.Row("baseline", "cpu", "victim.psi_mem_some_pct"); r == nil || math.Abs(r.Est.Mean-2) > 1e-9 {
		t.Errorf("victim memory PSI = %+v", r)
	}
	if r := s.Row("baseline", "cpu", "neighbour.throttled_ms"); r == nil || r.Est.Mean != 5 {
		t.Errorf("throttled = %+v", r)
	}
	if r := s.Row("joint", "cpu", "daemon.cpu_ms"); r == nil || r.Est.Mean != 80 {
		t.Errorf("daemon CPU = %+v, want the manifest's 80 ms", r)
	}
	if r := s.Row("baseline", "cpu", "scheduler.cpu_ms"); r != nil {
		t.Errorf("baseline ran no scheduler but reports its CPU: %+v", r)
	}
	if r := s.Row("joint", "cpu", "chat.stretch"); r == nil || r.Est.Mean != 1.25 {
		t.Errorf("elapsed over nominal = %+v, want 5s/4s", r)
	}
	if s.Representative == nil || s.Representative.Config != "joint" || s.Representative.Neighbour != "mem" {
		t.Errorf("representative = %+v", s.Representative)
	}
	if h := s.Pooled[analysis.CellKey{Config: "baseline", Neighbour: "cpu", Victim: "chat"}]; h == nil || h.TotalCount() != 4*2000 {
		t.Errorf("pooled histogram wrong")
	}
}

func TestAnalyzeDeterministic(t *testing.T) {
	dir, err := analysistest.WriteRun(t.TempDir(), 3, analysistest.Default())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := analysis.Analyze(dir)
	b, _ := analysis.Analyze(dir)
	if len(a.Rows) != len(b.Rows) {
		t.Fatal("row count differs")
	}
	for i := range a.Rows {
		if a.Rows[i].Metric != b.Rows[i].Metric || a.Rows[i].Est != b.Rows[i].Est {
			t.Fatalf("row %d differs: %+v vs %+v", i, a.Rows[i], b.Rows[i])
		}
	}
}

// A victim the OOM killer ended is a failed session, not a failed trial:
// the trial stays usable, the cell's survival rate counts it, and its
// latency percentiles come from the surviving repetitions only. The
// allocation probe and the neighbours' system time over memory.high are
// computed from the raw data like every other metric.
func TestAnalyzeMemoryPathologies(t *testing.T) {
	m := analysistest.Default()
	m.OOMKilled = func(tr plan.Trial) bool {
		return tr.Config == "baseline" && tr.Neighbour == "mem" && tr.Rep%2 == 0
	}
	m.AllocUS = func(cfg, set string) float64 {
		if set == "mem" && cfg == "baseline" {
			return 8000
		}
		return 1000
	}
	dir, err := analysistest.WriteRun(t.TempDir(), 4, m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := analysis.Analyze(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Trials) != s.Planned || len(s.Failed) != 0 {
		t.Fatalf("%d of %d trials usable, failed %v: an OOM-killed victim must not fail its trial", len(s.Trials), s.Planned, s.Failed)
	}
	if r := s.Row("baseline", "mem", "victim.survived"); r == nil || r.Est.N != 4 || r.Est.Mean != 0.5 {
		t.Errorf("baseline/mem survival = %+v, want 0.5 over 4 repetitions", r)
	}
	if r := s.Row("baseline", "mem", "chat.survived"); r == nil || r.Est.Mean != 0.5 {
		t.Errorf("chat survival = %+v", r)
	}
	if r := s.Row("joint", "mem", "victim.survived"); r == nil || r.Est.Mean != 1 {
		t.Errorf("joint/mem survival = %+v, want 1", r)
	}
	if r := s.Row("baseline", "mem", "chat.p99_ms"); r == nil || r.Est.N != 2 || !reflect.DeepEqual(r.Reps, []int{1, 3}) {
		t.Errorf("latency of a cell with killed victims = %+v, want the 2 surviving repetitions", r)
	}
	// Allocation latency: a median of 8 ms against 1 ms elsewhere.
	a, b := s.Row("baseline", "mem", "chat.alloc_p50_ms"), s.Row("joint", "mem", "chat.alloc_p50_ms")
	if a == nil || b == nil || math.Abs(a.Est.Mean-8) > 1 || math.Abs(b.Est.Mean-1) > 0.15 {
		t.Errorf("alloc p50 baseline %+v joint %+v, want about 8 and 1 ms", a, b)
	}
	for _, p := range []string{"alloc_p95_ms", "alloc_p99_ms"} {
		if r := s.Row("joint", "cpu", "chat."+p); r == nil || !(r.Est.Mean > 0) {
			t.Errorf("%s missing: %+v", p, r)
		}
	}
	// The synthetic neighbour burns 10 ms of system time per 100 ms
	// sample. With memory.high events growing in every interval (set
	// mem) the whole 4 s measured phase is over memory.high; without
	// them (set cpu) only the ten intervals from 3000 ms on, where
	// memory.current passes the 96M memory.high.
	if r := s.Row("baseline", "mem", "neighbour.sys_over_high_ms"); r == nil || math.Abs(r.Est.Mean-400) > 1e-9 {
		t.Errorf("sys over high (mem) = %+v, want 400 ms", r)
	}
	if r := s.Row("baseline", "cpu", "neighbour.sys_over_high_ms"); r == nil || math.Abs(r.Est.Mean-100) > 1e-9 {
		t.Errorf("sys over high (cpu) = %+v, want 100 ms", r)
	}
	if r := s.Row("baseline", "cpu", "neighbour.over_high_s"); r == nil || math.Abs(r.Est.Mean-1) > 1e-9 {
		t.Errorf("time over high (cpu) = %+v, want 1 s", r)
	}
	if r := s.Row("baseline", analysis.Solo, "neighbour.sys_over_high_ms"); r != nil {
		t.Errorf("solo trials have no neighbours: %+v", r)
	}
	if r := s.Row("baseline", "mem", "neighbour.oom_killed"); r == nil || r.Est.Mean != 0 {
		t.Errorf("neighbour OOM kills = %+v, want 0", r)
	}
}
