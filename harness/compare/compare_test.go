package compare

import (
	"bytes"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/harness/analysis/analysistest"
)

func TestNoRegressionAgainstItself(t *testing.T) {
	s := analysistest.Analyzed(t, 5, analysistest.Default())
	r := Compare(s, s, DefaultOptions)
	if len(r.Regressions) != 0 {
		t.Errorf("a run regresses against itself: %+v", r.Regressions)
	}
	for _, d := range r.Deltas {
		if d.Significant {
			t.Errorf("identical data reported significant: %+v", d)
		}
	}
}

func TestDetectsWorseTail(t *testing.T) {
	old := analysistest.Analyzed(t, 5, analysistest.Default())
	m := analysistest.Default()
	base := m.LatencyUS
	m.LatencyUS = func(cfg, set string) (float64, float64) {
		med, tail := base(cfg, set)
		if cfg == "joint" && set == "cpu" {
			tail *= 2 // joint's tail doubles against the cpu neighbours
		}
		return med, tail
	}
	new := analysistest.Analyzed(t, 5, m)
	r := Compare(old, new, DefaultOptions)
	if len(r.Regressions) != 1 || r.Regressions[0].Config != "joint" || r.Regressions[0].Neighbour != "cpu" ||
		r.Regressions[0].Metric != "chat.p99_ms" {
		t.Fatalf("regressions = %+v", r.Regressions)
	}
	d := r.Regressions[0]
	if d.RelPct < 50 || d.Diff.Lo <= 0 || d.P >= 0.05 {
		t.Errorf("delta = %+v", d)
	}
	var out bytes.Buffer
	if err := r.Write(&out, "old", "new"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "1 p99 regression(s)") || !strings.Contains(out.String(), "REGRESSION") {
		t.Errorf("output:\n%s", out.String())
	}

	// The same change below the threshold is not a regression.
	r = Compare(old, new, Options{ThresholdPct: 500, Alpha: 0.05})
	if len(r.Regressions) != 0 {
		t.Errorf("threshold ignored: %+v", r.Regressions)
	}
	// An improvement is never a regression.
	r = Compare(new, old, DefaultOptions)
	if len(r.Regressions) != 0 {
		t.Errorf("improvement flagged: %+v", r.Regressions)
	}
}

func TestCanReach(t *testing.T) {
	if canReach(3, 3, 0.05) {
		t.Error("3 vs 3: smallest p is 0.1")
	}
	if !canReach(4, 4, 0.05) {
		t.Error("4 vs 4: smallest p is 2/70")
	}
}
