package analysis_test

import (
	"math"
	"testing"

	"github.com/agentcgroup/agentcgroup/harness/analysis"
	"github.com/agentcgroup/agentcgroup/harness/analysis/analysistest"
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
