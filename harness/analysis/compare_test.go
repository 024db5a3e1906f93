package analysis

import (
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func row(cfg string, reps []int, vals []float64) *Row {
	return &Row{Config: cfg, Neighbour: "cpu", Metric: "chat.p99_ms", Reps: reps, Values: vals,
		Est: Bootstrap(vals, cfg)}
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func TestSignFlipKnownAnswers(t *testing.T) {
	cases := []struct {
		d []float64
		p float64
	}{
		// Every pair the same sign: only the observed signs and their
		// mirror image are as extreme, 2 of 2^n.
		{[]float64{1, 2, 3, 4, 5}, 2.0 / 32},
		{[]float64{-1, -2, -3, -4, -5, -6}, 2.0 / 64},
		// |3+1+2-0.5+4+2.5| = 12 of a total 13: flipping a subset F gives
		// |13 - 2 sum(F)| >= 12 only for F = {}, {0.5} and their mirrors.
		{[]float64{3, 1, 2, -0.5, 4, 2.5}, 4.0 / 64},
		{[]float64{1, -1}, 1},
		{[]float64{0, 0, 0, 0, 0, 0}, 1},
		{[]float64{5}, 1},
	}
	for _, c := range cases {
		if p := SignFlipP(c.d, "k"); math.Abs(p-c.p) > 1e-12 {
			t.Errorf("SignFlipP(%v) = %g, want %g", c.d, p, c.p)
		}
	}
	if p := SignFlipP(nil, "k"); !math.IsNaN(p) {
		t.Errorf("no pairs: p = %g, want NaN", p)
	}
	if MinSignFlipP(5) != 1.0/16 || MinSignFlipP(6) != 1.0/32 || MinSignFlipP(1) != 1 {
		t.Errorf("MinSignFlipP: %g %g %g", MinSignFlipP(5), MinSignFlipP(6), MinSignFlipP(1))
	}

	// Above the exact limit the test draws sign assignments.
	var same, sym []float64
	for i := 1; i <= 20; i++ {
		same = append(same, float64(i))
		sym = append(sym, float64(i)*float64(1-2*(i%2)))
	}
	if p := SignFlipP(same, "mc"); p > 0.001 || p <= 0 {
		t.Errorf("20 positive pairs: p = %g", p)
	}
	if p := SignFlipP(sym, "mc"); p < 0.5 {
		t.Errorf("20 alternating pairs: p = %g, want large", p)
	}
	if SignFlipP(same, "mc") != SignFlipP(same, "mc") {
		t.Error("drawn p-value not reproducible")
	}
}

// Below MinReps nothing beats anything, however large the gap.
func TestComparePairedFewRepsIndicative(t *testing.T) {
	for n := 1; n < MinReps; n++ {
		a, b := make([]float64, n), make([]float64, n)
		for i := range a {
			a[i], b[i] = 1+float64(i), 1000+float64(i)
		}
		c := ComparePaired(row("joint", seq(n), a), row("baseline", seq(n), b))
		if c.Verdict != VerdictIndicative || c.Lower != n || c.Higher != 0 || c.Pairs != n {
			t.Errorf("n=%d: %+v", n, c)
		}
		if !strings.Contains(c.Method, "indicative only") {
			t.Errorf("n=%d: method %q", n, c.Method)
		}
		if n >= 2 && c.Effect.Interval != IntervalRange {
			t.Errorf("n=%d: effect interval %q, want a range", n, c.Effect.Interval)
		}
	}
	// Random data of every small size, both orders.
	rng := rand.New(rand.NewPCG(5, 6))
	for k := 0; k < 200; k++ {
		n := 1 + rng.IntN(MinReps-1)
		a, b := make([]float64, n), make([]float64, n)
		for i := range a {
			a[i], b[i] = rng.ExpFloat64(), 10*rng.ExpFloat64()
		}
		for _, c := range []Comparison{
			ComparePaired(row("x", seq(n), a), row("y", seq(n), b)),
			ComparePaired(row("y", seq(n), b), row("x", seq(n), a)),
		} {
			if c.Verdict == VerdictBeats || c.Verdict == VerdictWorse {
				t.Fatalf("n=%d gave %q: %+v", n, c.Verdict, c)
			}
		}
	}
}

func TestComparePairedVerdicts(t *testing.T) {
	// Repetitions differ tenfold (a busy host in some blocks) and A is
	// half of B in every one: the cells' intervals overlap, the pairs agree.
	b6 := []float64{10, 40, 20, 80, 15, 60}
	a6 := make([]float64, 6)
	for i, x := range b6 {
		a6[i] = x / 2
	}
	c := ComparePaired(row("joint", seq(6), a6), row("baseline", seq(6), b6))
	if c.AEst.Hi < c.BEst.Lo {
		t.Fatalf("test data should give overlapping cell intervals: %+v %+v", c.AEst, c.BEst)
	}
	if c.Verdict != VerdictBeats || math.Abs(c.P-2.0/64) > 1e-12 || c.Scale != ScaleRatio ||
		math.Abs(c.Effect.Mean-0.5) > 1e-12 || !c.Effect.IsCI() {
		t.Errorf("6 pairs, all halved: %+v", c)
	}
	if !strings.Contains(c.Method, "paired sign-flip p = 0.031") || !strings.Contains(c.Method, "95% intervals overlap") {
		t.Errorf("method %q", c.Method)
	}
	// The other way round it is worse.
	if w := ComparePaired(row("baseline", seq(6), b6), row("joint", seq(6), a6)); w.Verdict != VerdictWorse || math.Abs(w.Effect.Mean-2) > 1e-12 {
		t.Errorf("reversed: %+v", w)
	}

	// Five pairs cannot reach p < 0.05; with overlapping intervals the
	// verdict is that A does not beat B, and the method says why.
	c = ComparePaired(row("joint", seq(5), a6[:5]), row("baseline", seq(5), b6[:5]))
	if c.Verdict != VerdictNotEstablished || math.Abs(c.P-1.0/16) > 1e-12 || !strings.Contains(c.Method, "5 pairs cannot reach p < 0.05") {
		t.Errorf("5 pairs, overlapping: %+v", c)
	}

	// Five pairs with clearly separated intervals beat.
	c = ComparePaired(row("joint", seq(5), []float64{1, 1.1, 0.9, 1, 1.05}), row("baseline", seq(5), []float64{10, 11, 9, 10, 10.5}))
	if c.Verdict != VerdictBeats || !strings.HasPrefix(c.Method, "95% intervals do not overlap") {
		t.Errorf("5 pairs, separated: %+v", c)
	}

	// No effect: pairs scatter both ways around equality.
	b8 := []float64{10, 12, 9, 11, 10, 13, 8, 10}
	a8 := []float64{10.5, 11.4, 9.3, 10.6, 10.4, 12.5, 8.3, 9.8}
	c = ComparePaired(row("joint", seq(8), a8), row("cpu-only", seq(8), b8))
	if c.Verdict != VerdictNotEstablished || c.P < 0.2 || !(c.Effect.Lo < 1 && 1 < c.Effect.Hi) || c.Lower+c.Higher != 8 {
		t.Errorf("no effect: %+v", c)
	}
}

// Several comparisons stated together share the paired test's level.
func TestAdjustHolm(t *testing.T) {
	b6 := []float64{10, 40, 20, 80, 15, 60}
	half := func(f float64) []float64 {
		out := make([]float64, len(b6))
		for i, x := range b6 {
			out[i] = x * f
		}
		return out
	}
	// Every pair lower, cell intervals overlapping: p = 1/32 each.
	cs := []Comparison{
		ComparePaired(row("cpu-only", seq(6), half(0.5)), row("baseline", seq(6), b6)),
		ComparePaired(row("mem-only", seq(6), half(0.6)), row("baseline", seq(6), b6)),
		ComparePaired(row("joint", seq(4), half(0.5)[:4]), row("baseline", seq(4), b6[:4])), // too few pairs: not in the family
	}
	if cs[0].Verdict != VerdictBeats || cs[0].Family != 1 || cs[0].PAdj != cs[0].P {
		t.Fatalf("alone: %+v", cs[0])
	}
	AdjustHolm(cs)
	for _, c := range cs[:2] {
		if c.Family != 2 || math.Abs(c.PAdj-2.0/32) > 1e-12 || c.Verdict != VerdictNotEstablished ||
			!strings.Contains(c.Method, "0.031 over 6 pairs, 0.062 after Holm's adjustment for 2 comparisons") {
			t.Errorf("adjusted: %+v", c)
		}
	}
	if cs[2].Family != 1 || cs[2].Verdict != VerdictIndicative {
		t.Errorf("4 pairs joined the family: %+v", cs[2])
	}

	// Holm's step-down by hand: p = 0.01, 0.04, 0.03 over 3 become
	// 0.03, max(0.06, 0.04) = 0.06, 0.06.
	hs := []Comparison{{P: 0.01, Pairs: 6}, {P: 0.04, Pairs: 6}, {P: 0.03, Pairs: 6}}
	AdjustHolm(hs)
	for i, want := range []float64{0.03, 0.06, 0.06} {
		if math.Abs(hs[i].PAdj-want) > 1e-12 || hs[i].Family != 3 {
			t.Errorf("p %g adjusted to %g over %d, want %g over 3", hs[i].P, hs[i].PAdj, hs[i].Family, want)
		}
	}
}

// A repetition with data on one side only is dropped, and pairs are
// matched by repetition, not by position.
func TestComparePairedDropsMissing(t *testing.T) {
	a := row("joint", []int{0, 1, 2, 3, 5, 6}, []float64{5, 5, 500, 5, 5, 5})
	b := row("baseline", []int{0, 1, 3, 4, 5, 6}, []float64{10, 10, 10, 1, 10, 10})
	c := ComparePaired(a, b)
	if c.Pairs != 5 || !reflect.DeepEqual(c.Dropped, []int{2, 4}) || c.Lower != 5 || c.Higher != 0 {
		t.Fatalf("pairs %d dropped %v lower %d higher %d", c.Pairs, c.Dropped, c.Lower, c.Higher)
	}
	if math.Abs(c.Effect.Mean-0.5) > 1e-12 || math.Abs(c.P-1.0/16) > 1e-12 {
		t.Errorf("effect %+v p %g: unpaired values leaked in", c.Effect, c.P)
	}

	// No common repetition at all.
	c = ComparePaired(row("joint", []int{0, 1}, []float64{1, 2}), row("baseline", []int{2, 3}, []float64{1, 2}))
	if c.Verdict != VerdictNoData || c.Pairs != 0 || !reflect.DeepEqual(c.Dropped, []int{0, 1, 2, 3}) {
		t.Errorf("disjoint: %+v", c)
	}
	// One side empty.
	c = ComparePaired(row("joint", nil, nil), row("baseline", []int{0}, []float64{1}))
	if c.Verdict != VerdictNoData || c.Method != "no data for joint" {
		t.Errorf("empty side: %+v", c)
	}
}

// Metrics that can be zero are compared as differences.
func TestComparePairedDifferenceScale(t *testing.T) {
	a := row("joint", seq(6), []float64{0, 0, 1, 0, 0, 0})
	b := row("baseline", seq(6), []float64{5, 6, 7, 5, 6, 7})
	c := ComparePaired(a, b)
	if c.Scale != ScaleDifference || math.Abs(c.Effect.Mean-(1.0/6-6)) > 1e-12 || c.Verdict != VerdictBeats {
		t.Errorf("%+v", c)
	}
}

func TestComparisonPairs(t *testing.T) {
	got := ComparisonPairs([]string{"baseline", "cpu-only", "mem-only-stock", "mem-only-bpf", "joint-stock", "joint-bpf"})
	want := [][2]string{
		{"cpu-only", "baseline"}, {"mem-only-stock", "baseline"}, {"mem-only-bpf", "baseline"},
		{"joint-stock", "baseline"}, {"joint-bpf", "baseline"},
		{"joint-stock", "cpu-only"}, {"joint-stock", "mem-only-stock"},
		{"joint-bpf", "cpu-only"}, {"joint-bpf", "mem-only-bpf"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if got := ComparisonPairs([]string{"baseline", "joint"}); !reflect.DeepEqual(got, [][2]string{{"joint", "baseline"}}) {
		t.Errorf("baseline+joint: %v", got)
	}
	if got := ComparisonPairs([]string{"cpu-only", "jointly"}); len(got) != 0 {
		t.Errorf("no baseline, no joint: %v", got)
	}
}
