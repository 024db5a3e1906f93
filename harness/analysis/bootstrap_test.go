package analysis

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestBootstrapCoverage(t *testing.T) {
	// Samples of 10 from N(5, 1): the 95% interval should contain 5 in
	// most of 200 experiments (percentile bootstrap under-covers a little
	// at n = 10, so accept 85%).
	rng := rand.New(rand.NewPCG(1, 2))
	hit := 0
	for e := 0; e < 200; e++ {
		xs := make([]float64, 10)
		for i := range xs {
			xs[i] = 5 + rng.NormFloat64()
		}
		est := Bootstrap(xs, "cov")
		if est.Lo <= 5 && 5 <= est.Hi {
			hit++
		}
		if !(est.Lo <= est.Mean && est.Mean <= est.Hi) {
			t.Fatalf("interval %+v does not contain its mean", est)
		}
	}
	if hit < 170 {
		t.Errorf("coverage %d/200", hit)
	}
}

func TestBootstrapEdges(t *testing.T) {
	if e := Bootstrap(nil, "x"); e.Valid() {
		t.Error("empty sample is valid")
	}
	if e := Bootstrap([]float64{3}, "x"); e.Mean != 3 || e.Lo != 3 || e.Hi != 3 {
		t.Errorf("single value: %+v", e)
	}
	a, b := Bootstrap([]float64{1, 2, 3, 4, 5}, "k"), Bootstrap([]float64{1, 2, 3, 4, 5}, "k")
	if a != b {
		t.Error("same key, different interval")
	}
}

// Below MinReps an estimate's interval is the values' range, labelled as
// such; from MinReps on it is a bootstrap CI inside the range.
func TestIntervalKindByReps(t *testing.T) {
	cases := []struct {
		xs     []float64
		kind   IntervalKind
		lo, hi float64 // exact bounds for ranges and points
	}{
		{nil, IntervalNone, math.NaN(), math.NaN()},
		{[]float64{7}, IntervalPoint, 7, 7},
		{[]float64{30, 10}, IntervalRange, 10, 30},
		{[]float64{4, 9, 1}, IntervalRange, 1, 9},
		{[]float64{4, 9, 1, 6}, IntervalRange, 1, 9},
		{[]float64{4, 9, 1, 6, 5}, IntervalCI95, 0, 0},
		{[]float64{4, 9, 1, 6, 5, 5, 7, 3}, IntervalCI95, 0, 0},
	}
	for _, c := range cases {
		e := Bootstrap(c.xs, "kind")
		if e.Interval != c.kind || e.N != len(c.xs) {
			t.Errorf("%v: interval %q n %d, want %q n %d", c.xs, e.Interval, e.N, c.kind, len(c.xs))
			continue
		}
		if e.IsCI() != (c.kind == IntervalCI95) {
			t.Errorf("%v: IsCI = %v", c.xs, e.IsCI())
		}
		switch c.kind {
		case IntervalRange, IntervalPoint:
			if e.Lo != c.lo || e.Hi != c.hi {
				t.Errorf("%v: [%g, %g], want the range [%g, %g]", c.xs, e.Lo, e.Hi, c.lo, c.hi)
			}
		case IntervalCI95:
			lo, hi := c.xs[0], c.xs[0]
			for _, x := range c.xs {
				lo, hi = math.Min(lo, x), math.Max(hi, x)
			}
			if !(lo <= e.Lo && e.Lo <= e.Mean && e.Mean <= e.Hi && e.Hi <= hi) || e.Hi-e.Lo >= hi-lo {
				t.Errorf("%v: CI [%g, %g] around %g should lie strictly inside the range [%g, %g]", c.xs, e.Lo, e.Hi, e.Mean, lo, hi)
			}
		}
	}
	if MinReps != 5 {
		t.Errorf("MinReps = %d; the report's method section and results/README.md state 5", MinReps)
	}
}

func TestDiffBootstrap(t *testing.T) {
	d := DiffBootstrap([]float64{10, 11, 9, 10, 10}, []float64{20, 21, 19, 20, 20}, "d")
	if d.Mean != 10 || d.Lo < 8 || d.Hi > 12 || d.Lo > d.Hi {
		t.Errorf("diff = %+v", d)
	}
}

func TestMannWhitney(t *testing.T) {
	// Completely separated samples of 5 and 5: exact two-sided p = 2/252.
	p := MannWhitney([]float64{1, 2, 3, 4, 5}, []float64{6, 7, 8, 9, 10})
	if math.Abs(p-2.0/252) > 1e-12 {
		t.Errorf("p = %g, want %g", p, 2.0/252)
	}
	// Identical samples: no evidence of a difference.
	if p := MannWhitney([]float64{1, 2, 3}, []float64{1, 2, 3}); p < 0.99 {
		t.Errorf("identical p = %g", p)
	}
	// Large samples use the normal approximation; shifted by 1 sd with
	// n = 40 each, the difference is clear.
	rng := rand.New(rand.NewPCG(3, 4))
	var a, b []float64
	for i := 0; i < 40; i++ {
		a = append(a, rng.NormFloat64())
		b = append(b, 1+rng.NormFloat64())
	}
	if p := MannWhitney(a, b); p > 0.01 {
		t.Errorf("shifted p = %g", p)
	}
}
