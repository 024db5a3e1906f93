package analysis

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"

	"gonum.org/v1/gonum/stat"
)

// Resamples is the number of bootstrap resamples behind every interval.
const Resamples = 10000

// MinReps is the fewest repetitions behind a bootstrap confidence interval
// and behind any claim that one configuration beats another. A percentile
// bootstrap over two to four values only re-describes those values (over
// two it is exactly their range) and covers the true mean far less often
// than 95%, so below MinReps an estimate carries the plain min-max range,
// labelled as such, and comparisons are indicative only.
const MinReps = 5

// IntervalKind says what an Estimate's [Lo, Hi] is. The strings appear in
// summary.csv's interval column.
type IntervalKind string

const (
	// IntervalCI95 is a 95% percentile-bootstrap confidence interval of
	// the mean (MinReps values or more).
	IntervalCI95 IntervalKind = "ci95-bootstrap"
	// IntervalRange is the minimum and maximum of 2..MinReps-1 values: a
	// description of the data, not a confidence interval.
	IntervalRange IntervalKind = "range"
	// IntervalPoint is a single value: Lo = Hi = Mean.
	IntervalPoint IntervalKind = "point"
	// IntervalNone marks an estimate without data.
	IntervalNone IntervalKind = "none"
)

// Estimate is a mean over repetitions with an interval whose meaning
// Interval states.
type Estimate struct {
	N        int          // repetitions behind it
	Mean     float64      // NaN when N == 0
	Lo, Hi   float64      // see Interval
	Interval IntervalKind // what [Lo, Hi] is
}

// Valid reports whether the estimate has data.
func (e Estimate) Valid() bool { return e.N > 0 && !math.IsNaN(e.Mean) }

// IsCI reports whether [Lo, Hi] is a confidence interval (rather than a
// range or a single value).
func (e Estimate) IsCI() bool { return e.Interval == IntervalCI95 }

// Bootstrap estimates the mean of xs. From MinReps values up the interval
// is a 95% percentile bootstrap; key seeds the resampling (FNV of key), so
// the same data always gives the same interval whatever order estimates
// are computed in. Below MinReps the interval is the values' range.
func Bootstrap(xs []float64, key string) Estimate {
	n := len(xs)
	if n == 0 {
		return Estimate{Mean: math.NaN(), Lo: math.NaN(), Hi: math.NaN(), Interval: IntervalNone}
	}
	m := stat.Mean(xs, nil)
	if n == 1 {
		return Estimate{N: 1, Mean: m, Lo: m, Hi: m, Interval: IntervalPoint}
	}
	if n < MinReps {
		lo, hi := xs[0], xs[0]
		for _, x := range xs[1:] {
			lo, hi = math.Min(lo, x), math.Max(hi, x)
		}
		return Estimate{N: n, Mean: m, Lo: lo, Hi: hi, Interval: IntervalRange}
	}
	rng := rand.New(rand.NewPCG(seedOf(key), 0x626f6f74)) // "boot"
	means := make([]float64, Resamples)
	for b := range means {
		s := 0.0
		for i := 0; i < n; i++ {
			s += xs[rng.IntN(n)]
		}
		means[b] = s / float64(n)
	}
	sort.Float64s(means)
	return Estimate{
		N:        n,
		Mean:     m,
		Lo:       stat.Quantile(0.025, stat.Empirical, means, nil),
		Hi:       stat.Quantile(0.975, stat.Empirical, means, nil),
		Interval: IntervalCI95,
	}
}

// DiffBootstrap estimates mean(b) - mean(a) for two independent samples with
// a 95% bootstrap interval, resampling each side separately. It resamples
// whatever the sample sizes, so below MinReps per side the interval is
// rough; for configurations within one run, whose repetitions are paired,
// ComparePaired is the comparison to use.
func DiffBootstrap(a, b []float64, key string) Estimate {
	if len(a) == 0 || len(b) == 0 {
		return Estimate{Mean: math.NaN(), Lo: math.NaN(), Hi: math.NaN(), Interval: IntervalNone}
	}
	d := stat.Mean(b, nil) - stat.Mean(a, nil)
	rng := rand.New(rand.NewPCG(seedOf(key), 0x64696666)) // "diff"
	diffs := make([]float64, Resamples)
	for i := range diffs {
		diffs[i] = resampleMean(rng, b) - resampleMean(rng, a)
	}
	sort.Float64s(diffs)
	n := len(a)
	if len(b) < n {
		n = len(b)
	}
	return Estimate{
		N:        n,
		Mean:     d,
		Lo:       stat.Quantile(0.025, stat.Empirical, diffs, nil),
		Hi:       stat.Quantile(0.975, stat.Empirical, diffs, nil),
		Interval: IntervalCI95,
	}
}

func resampleMean(rng *rand.Rand, xs []float64) float64 {
	s := 0.0
	for range xs {
		s += xs[rng.IntN(len(xs))]
	}
	return s / float64(len(xs))
}

func seedOf(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64()
}

// MannWhitney returns the two-sided p-value of the Mann-Whitney U test for
// a and b: exact (by enumeration) when both samples have at most 8 values,
// as with our handful of repetitions, else the normal approximation with
// tie and continuity correction.
func MannWhitney(a, b []float64) float64 {
	n1, n2 := len(a), len(b)
	if n1 == 0 || n2 == 0 {
		return math.NaN()
	}
	if n1 <= 8 && n2 <= 8 {
		return exactMannWhitney(a, b)
	}
	type obs struct {
		v     float64
		first bool
	}
	all := make([]obs, 0, n1+n2)
	for _, v := range a {
		all = append(all, obs{v, true})
	}
	for _, v := range b {
		all = append(all, obs{v, false})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v < all[j].v })
	ranks := make([]float64, len(all))
	tie := 0.0
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		r := float64(i+j+1) / 2
		for k := i; k < j; k++ {
			ranks[k] = r
		}
		t := float64(j - i)
		tie += t*t*t - t
		i = j
	}
	r1 := 0.0
	for i, o := range all {
		if o.first {
			r1 += ranks[i]
		}
	}
	fn1, fn2 := float64(n1), float64(n2)
	u := r1 - fn1*(fn1+1)/2
	mu := fn1 * fn2 / 2
	n := fn1 + fn2
	sigma := math.Sqrt(fn1 * fn2 / 12 * ((n + 1) - tie/(n*(n-1))))
	if sigma == 0 {
		return 1
	}
	z := (math.Abs(u-mu) - 0.5) / sigma
	if z < 0 {
		z = 0
	}
	return math.Erfc(z / math.Sqrt2)
}

// exactMannWhitney enumerates every split of the pooled sample (at most
// C(16,8) = 12870) and counts those with a U at least as extreme.
func exactMannWhitney(a, b []float64) float64 {
	pooled := append(append([]float64{}, a...), b...)
	n1, n := len(a), len(pooled)
	uOf := func(in []bool) float64 {
		u := 0.0
		for i := 0; i < n; i++ {
			if !in[i] {
				continue
			}
			for j := 0; j < n; j++ {
				if in[j] {
					continue
				}
				switch {
				case pooled[i] > pooled[j]:
					u++
				case pooled[i] == pooled[j]:
					u += 0.5
				}
			}
		}
		return u
	}
	mu := float64(n1*(n-n1)) / 2
	in := make([]bool, n)
	for i := 0; i < n1; i++ {
		in[i] = true
	}
	obs := math.Abs(uOf(in) - mu)
	total, extreme := 0, 0
	var rec func(start, left int)
	rec = func(start, left int) {
		if left == 0 {
			total++
			if math.Abs(uOf(in)-mu) >= obs-1e-9 {
				extreme++
			}
			return
		}
		for i := start; i <= n-left; i++ {
			in[i] = true
			rec(i+1, left-1)
			in[i] = false
		}
	}
	for i := range in {
		in[i] = false
	}
	rec(0, n1)
	return float64(extreme) / float64(total)
}
