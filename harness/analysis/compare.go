package analysis

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
)

// PairedAlpha is the two-sided level of the paired sign-flip test.
const PairedAlpha = 0.05

// Up to exactSignFlipMax pairs the sign-flip test enumerates every sign
// assignment (2^16 = 65536); above that it draws signFlipDraws seeded ones.
const (
	exactSignFlipMax = 16
	signFlipDraws    = 20000
)

// Verdict is what a comparison of configuration A against B establishes.
// Lower is better: the comparisons are of latencies.
type Verdict string

const (
	// VerdictNoData: one side has no data, or no repetition has both.
	VerdictNoData Verdict = "no-data"
	// VerdictIndicative: fewer than MinReps pairs and fewer than MinReps
	// repetitions per side; only the direction per pair is reported.
	VerdictIndicative Verdict = "indicative"
	// VerdictBeats: A is lower, by non-overlapping 95% intervals or by the
	// paired test.
	VerdictBeats Verdict = "beats"
	// VerdictWorse: A is higher, by the same criteria.
	VerdictWorse Verdict = "worse"
	// VerdictNotEstablished: enough repetitions, but neither criterion
	// holds; A does not beat B.
	VerdictNotEstablished Verdict = "not-established"
)

// EffectScale says how a paired comparison measures each pair.
type EffectScale string

const (
	// ScaleRatio: A/B per pair, averaged on the log scale (a geometric
	// mean), for metrics that are always positive such as latencies.
	ScaleRatio EffectScale = "ratio"
	// ScaleDifference: A-B per pair, for metrics that can be zero.
	ScaleDifference EffectScale = "difference"
)

// Comparison is configuration A against configuration B for one metric
// and neighbour set, repetition by repetition.
type Comparison struct {
	A, B      string // configurations; the verdict is about A relative to B
	Neighbour string
	Metric    string
	AEst      Estimate // A's cell estimate (its own interval kind)
	BEst      Estimate
	Verdict   Verdict
	// Method says in words how the verdict was reached, e.g. "95%
	// intervals do not overlap; paired sign-flip p = 0.031", or
	// "indicative only: 2 reps".
	Method string
	Scale  EffectScale
	// Effect is the paired effect (A/B or A-B) over the pairs; its
	// Interval is a 95% bootstrap CI from MinReps pairs up, the range of
	// the pairs' effects below.
	Effect Estimate
	// P is the exact two-sided sign-flip permutation p-value of the mean
	// paired effect (on the log scale for ratios); NaN without pairs.
	P float64
	// PAdj is P after Holm's adjustment over the Family comparisons
	// decided together (AdjustHolm); a lone comparison has PAdj = P and
	// Family = 1. The verdict uses PAdj.
	PAdj   float64
	Family int
	// Pairs is the number of repetitions with data on both sides; Lower
	// and Higher count those where A was below and above B.
	Pairs, Lower, Higher int
	// Dropped lists repetitions with data on one side only (a failed or
	// missing trial); they take no part in the paired test.
	Dropped []int
}

// Compare looks up the two cells and compares them with ComparePaired.
func (s *Summary) Compare(a, b, set, metric string) Comparison {
	ra, rb := s.Row(a, set, metric), s.Row(b, set, metric)
	if ra == nil {
		ra = &Row{Config: a, Neighbour: set, Metric: metric, Est: Bootstrap(nil, "")}
	}
	if rb == nil {
		rb = &Row{Config: b, Neighbour: set, Metric: metric, Est: Bootstrap(nil, "")}
	}
	return ComparePaired(ra, rb)
}

// ComparePaired compares row a against row b (same metric and neighbour
// set, two configurations). Within a repetition every configuration runs
// the same workload seed, so the repetitions pair up and the comparison is
// made on per-repetition effects, which cancel what a repetition shares
// (its random workload, a busy host during its block).
//
// A beats B (or is worse) only with MinReps repetitions, and then when
// either the two cells' 95% bootstrap intervals do not overlap, or the
// exact sign-flip test on the paired effects rejects at PairedAlpha (after
// AdjustHolm when several comparisons are stated together). Below MinReps
// the verdict is VerdictIndicative.
func ComparePaired(a, b *Row) Comparison {
	c := Comparison{A: a.Config, B: b.Config, Neighbour: a.Neighbour, Metric: a.Metric,
		AEst: a.Est, BEst: b.Est, P: math.NaN(), PAdj: math.NaN(), Family: 1, Scale: ScaleRatio, Effect: Bootstrap(nil, "")}
	if !a.Est.Valid() || !b.Est.Valid() {
		c.Verdict = VerdictNoData
		missing := a.Config
		if a.Est.Valid() {
			missing = b.Config
		}
		c.Method = "no data for " + missing
		return c
	}
	bBy := map[int]float64{}
	for i, r := range b.Reps {
		bBy[r] = b.Values[i]
	}
	var av, bv []float64
	inA := map[int]bool{}
	for i, r := range a.Reps {
		inA[r] = true
		if y, ok := bBy[r]; ok {
			av, bv = append(av, a.Values[i]), append(bv, y)
		} else {
			c.Dropped = append(c.Dropped, r)
		}
	}
	for _, r := range b.Reps {
		if !inA[r] {
			c.Dropped = append(c.Dropped, r)
		}
	}
	sort.Ints(c.Dropped)
	c.Pairs = len(av)
	if c.Pairs == 0 {
		c.Verdict = VerdictNoData
		c.Method = "no repetition has data for both"
		return c
	}
	for i := range av {
		if av[i] <= 0 || bv[i] <= 0 {
			c.Scale = ScaleDifference
		}
	}
	d := make([]float64, c.Pairs)
	for i := range av {
		if c.Scale == ScaleRatio {
			d[i] = math.Log(av[i] / bv[i])
		} else {
			d[i] = av[i] - bv[i]
		}
		switch {
		case av[i] < bv[i]:
			c.Lower++
		case av[i] > bv[i]:
			c.Higher++
		}
	}
	key := "paired|" + a.Config + "|" + b.Config + "|" + a.Neighbour + "|" + a.Metric
	c.Effect = Bootstrap(d, key)
	if c.Scale == ScaleRatio {
		c.Effect.Mean, c.Effect.Lo, c.Effect.Hi = math.Exp(c.Effect.Mean), math.Exp(c.Effect.Lo), math.Exp(c.Effect.Hi)
	}
	c.P = SignFlipP(d, key)
	c.PAdj = c.P
	c.decide()
	return c
}

// decide sets Verdict and Method from the fields ComparePaired computed
// and the adjusted p-value.
func (c *Comparison) decide() {
	if c.Verdict == VerdictNoData {
		return
	}
	cellsCI := c.AEst.IsCI() && c.BEst.IsCI()
	enoughPairs := c.Pairs >= MinReps
	if !cellsCI && !enoughPairs {
		c.Verdict = VerdictIndicative
		c.Method = fmt.Sprintf("indicative only: %d reps", c.Pairs)
		return
	}
	neutral := 0.0
	if c.Scale == ScaleRatio {
		neutral = 1
	}
	var lower, higher, neither []string
	if cellsCI {
		switch {
		case c.AEst.Hi < c.BEst.Lo:
			lower = append(lower, "95% intervals do not overlap")
		case c.AEst.Lo > c.BEst.Hi:
			higher = append(higher, "95% intervals do not overlap")
		default:
			neither = append(neither, "95% intervals overlap")
		}
	}
	pText := fmt.Sprintf("paired sign-flip p = %.2g over %d pairs", c.P, c.Pairs)
	if c.Family > 1 {
		pText += fmt.Sprintf(", %.2g after Holm's adjustment for %d comparisons", c.PAdj, c.Family)
	}
	switch {
	case !enoughPairs:
		neither = append(neither, fmt.Sprintf("%d pairs, too few for the paired test", c.Pairs))
	case c.PAdj < PairedAlpha && c.Effect.Mean < neutral:
		lower = append(lower, pText)
	case c.PAdj < PairedAlpha && c.Effect.Mean > neutral:
		higher = append(higher, pText)
	case MinSignFlipP(c.Pairs) >= PairedAlpha:
		neither = append(neither, fmt.Sprintf("%s (%d pairs cannot reach p < %g)", pText, c.Pairs, PairedAlpha))
	default:
		neither = append(neither, pText)
	}
	switch {
	case len(lower) > 0 && len(higher) > 0:
		c.Verdict = VerdictNotEstablished
		c.Method = "criteria disagree: " + strings.Join(append(lower, higher...), "; ")
	case len(lower) > 0:
		c.Verdict = VerdictBeats
		c.Method = strings.Join(append(lower, neither...), "; ")
	case len(higher) > 0:
		c.Verdict = VerdictWorse
		c.Method = strings.Join(append(higher, neither...), "; ")
	default:
		c.Verdict = VerdictNotEstablished
		c.Method = strings.Join(neither, "; ")
	}
}

// AdjustHolm adjusts the paired p-values of comparisons stated together
// with Holm's step-down method and re-decides their verdicts, so that the
// chance of any paired test among them rejecting when no configuration
// has an effect stays at PairedAlpha. Only comparisons with MinReps pairs
// or more use the test, so only they form the family.
func AdjustHolm(cs []Comparison) {
	var fam []int
	for i := range cs {
		if cs[i].Pairs >= MinReps && !math.IsNaN(cs[i].P) {
			fam = append(fam, i)
		}
	}
	sort.SliceStable(fam, func(x, y int) bool { return cs[fam[x]].P < cs[fam[y]].P })
	k, run := len(fam), 0.0
	for rank, i := range fam {
		run = math.Max(run, math.Min(1, float64(k-rank)*cs[i].P))
		cs[i].PAdj, cs[i].Family = run, k
		cs[i].decide()
	}
}

// CompareFamily compares, for each metric and each neighbour set other
// than solo, every pair from ComparisonPairs(s.Configs), and adjusts the
// paired tests together (AdjustHolm): the comparisons a report states.
// Comparisons where B has no data are left out.
func (s *Summary) CompareFamily(metrics []string) []Comparison {
	var out []Comparison
	for _, m := range metrics {
		for _, set := range s.Sets {
			if set == Solo {
				continue
			}
			for _, pr := range ComparisonPairs(s.BaseConfigs()) {
				if c := s.Compare(pr[0], pr[1], set, m); c.BEst.Valid() {
					out = append(out, c)
				}
			}
		}
	}
	AdjustHolm(out)
	return out
}

// SignFlipP is the two-sided p-value of the sign-flip permutation test of
// a zero mean for paired effects d: under no effect each pair's sign is as
// likely flipped (the configurations of a repetition are exchangeable), so
// the observed |sum| is ranked among the sums of every sign assignment.
// Exact up to exactSignFlipMax pairs; above, drawn from assignments
// seeded by key. NaN for no pairs.
func SignFlipP(d []float64, key string) float64 {
	n := len(d)
	if n == 0 {
		return math.NaN()
	}
	obs, scale := 0.0, 0.0
	for _, x := range d {
		obs += x
		scale += math.Abs(x)
	}
	obs = math.Abs(obs)
	// Sums equal to the observed one up to rounding count as extreme.
	tol := 1e-9 * scale
	if n <= exactSignFlipMax {
		extreme := 0
		for mask := 0; mask < 1<<n; mask++ {
			s := 0.0
			for i, x := range d {
				if mask&(1<<i) != 0 {
					s -= x
				} else {
					s += x
				}
			}
			if math.Abs(s) >= obs-tol {
				extreme++
			}
		}
		return float64(extreme) / float64(int(1)<<n)
	}
	rng := rand.New(rand.NewPCG(seedOf(key), 0x7369676e)) // "sign"
	extreme := 0
	for k := 0; k < signFlipDraws; k++ {
		s := 0.0
		for _, x := range d {
			if rng.IntN(2) == 0 {
				s -= x
			} else {
				s += x
			}
		}
		if math.Abs(s) >= obs-tol {
			extreme++
		}
	}
	return float64(extreme+1) / float64(signFlipDraws+1)
}

// MinSignFlipP is the smallest p-value the exact sign-flip test can give
// with n pairs: the observed signs and their mirror image, 2 of 2^n. With
// 5 pairs it is 1/16, so at least 6 pairs are needed for p < 0.05.
func MinSignFlipP(n int) float64 {
	if n <= 0 {
		return 1
	}
	return math.Min(1, 2/math.Pow(2, float64(n)))
}

// ComparisonPairs lists the comparisons worth stating for a run's
// configurations, as (A, B): every configuration against baseline, and
// every joint configuration against cpu-only and against the mem-only
// configuration of the same memory mode, since joint is worth having only
// if it beats each mechanism alone.
func ComparisonPairs(configs []string) [][2]string {
	has := map[string]bool{}
	for _, c := range configs {
		has[c] = true
	}
	var out [][2]string
	if has["baseline"] {
		for _, c := range configs {
			if c != "baseline" {
				out = append(out, [2]string{c, "baseline"})
			}
		}
	}
	for _, c := range configs {
		mode, ok := strings.CutPrefix(c, "joint")
		if !ok || (mode != "" && !strings.HasPrefix(mode, "-")) {
			continue
		}
		if has["cpu-only"] {
			out = append(out, [2]string{c, "cpu-only"})
		}
		if has["mem-only"+mode] {
			out = append(out, [2]string{c, "mem-only" + mode})
		}
	}
	return out
}
