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
	a, b := Bootstrap([]float64{1, 2, 3, 4}, "k"), Bootstrap([]float64{1, 2, 3, 4}, "k")
	if a != b {
		t.Error("same key, different interval")
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
