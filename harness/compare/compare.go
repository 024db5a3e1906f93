// Package compare sets two analysed runs side by side, metric by metric,
// and flags p99 regressions: the regression gate for nightly CI.
package compare

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/agentcgroup/agentcgroup/harness/analysis"
)

// Options tune the gate.
type Options struct {
	// ThresholdPct: a p99 must grow by more than this (relative, %) to
	// count as a regression.
	ThresholdPct float64
	// Alpha is the Mann-Whitney significance level, applied when both
	// runs have enough repetitions for the test to reach it.
	Alpha float64
	// All prints every metric, not only latency, slowdown and memory.events.
	All bool
}

// DefaultOptions: 10% worse and significant.
var DefaultOptions = Options{ThresholdPct: 10, Alpha: 0.05}

// Delta is one metric of one cell in both runs.
type Delta struct {
	Config, Neighbour, Metric string
	Old, New                  analysis.Estimate
	Diff                      analysis.Estimate // new - old, 95% bootstrap interval
	RelPct                    float64           // 100 * (new - old) / old
	P                         float64           // Mann-Whitney two-sided p-value
	// Significant: the difference's interval excludes 0 and, where the
	// sample sizes allow it to, Mann-Whitney rejects at Alpha.
	Significant bool
	Regression  bool
}

// Result is a whole comparison.
type Result struct {
	Deltas      []Delta
	Regressions []Delta
	OnlyOld     []string // cells/metrics missing from the new run
	OnlyNew     []string
	Opts        Options
}

// Compare matches rows by (configuration, neighbour set, metric).
func Compare(old, new *analysis.Summary, o Options) *Result {
	res := &Result{Opts: o}
	key := func(r *analysis.Row) string { return r.Config + "|" + r.Neighbour + "|" + r.Metric }
	newBy := map[string]*analysis.Row{}
	for _, r := range new.Rows {
		newBy[key(r)] = r
	}
	seen := map[string]bool{}
	for _, a := range old.Rows {
		k := key(a)
		seen[k] = true
		b, ok := newBy[k]
		if !ok {
			res.OnlyOld = append(res.OnlyOld, k)
			continue
		}
		if !o.All && !interesting(a.Metric) {
			continue
		}
		d := Delta{Config: a.Config, Neighbour: a.Neighbour, Metric: a.Metric, Old: a.Est, New: b.Est,
			Diff: analysis.DiffBootstrap(a.Values, b.Values, "compare|"+k),
			P:    analysis.MannWhitney(a.Values, b.Values)}
		d.RelPct = 100 * (b.Est.Mean - a.Est.Mean) / a.Est.Mean
		if a.Est.Mean == 0 {
			d.RelPct = math.NaN()
		}
		excludes0 := d.Diff.Lo > 0 || d.Diff.Hi < 0
		d.Significant = excludes0 && (!canReach(len(a.Values), len(b.Values), o.Alpha) || d.P < o.Alpha)
		if isP99(a.Metric) && d.Significant && d.Diff.Mean > 0 && d.RelPct > o.ThresholdPct {
			d.Regression = true
			res.Regressions = append(res.Regressions, d)
		}
		res.Deltas = append(res.Deltas, d)
	}
	for _, r := range new.Rows {
		if !seen[key(r)] {
			res.OnlyNew = append(res.OnlyNew, key(r))
		}
	}
	sort.Strings(res.OnlyOld)
	sort.Strings(res.OnlyNew)
	return res
}

// canReach reports whether an exact two-sided Mann-Whitney test on samples
// of n1 and n2 can reach p < alpha at all: its smallest p is
// 2 / C(n1+n2, n1). With 3 vs 3 repetitions it is 0.1, so the test alone
// could never flag anything and only the bootstrap interval decides.
func canReach(n1, n2 int, alpha float64) bool {
	if n1 == 0 || n2 == 0 {
		return false
	}
	c := 1.0
	for i := 1; i <= n1; i++ {
		c = c * float64(n2+i) / float64(i)
	}
	return 2/c < alpha
}

func isP99(m string) bool { return strings.HasSuffix(m, ".p99_ms") }

func interesting(m string) bool {
	for _, s := range []string{"_ms", ".slowdown_mean", ".slowdown_p99", ".mem.high", ".mem.max", ".mem.oom", ".mem.oom_kill"} {
		if strings.HasSuffix(m, s) && !strings.HasSuffix(m, "throttled_ms") && !strings.HasSuffix(m, "cpu_usage_ms") {
			return true
		}
	}
	return false
}

// Write prints the comparison as an aligned table, regressions last.
func (r *Result) Write(w io.Writer, oldName, newName string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "config\tneighbours\tmetric\told\tnew\tdelta\t95%% CI of delta\tp\t\n")
	for _, d := range r.Deltas {
		mark := ""
		switch {
		case d.Regression:
			mark = "REGRESSION"
		case d.Significant:
			mark = "significant"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t[%s, %s]\t%s\t%s\n", d.Config, d.Neighbour, d.Metric,
			fmtE(d.Old), fmtE(d.New), pct(d.RelPct), g(d.Diff.Lo), g(d.Diff.Hi), g(d.P), mark)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.OnlyOld) > 0 {
		fmt.Fprintf(w, "\nonly in %s: %s\n", oldName, strings.Join(r.OnlyOld, ", "))
	}
	if len(r.OnlyNew) > 0 {
		fmt.Fprintf(w, "\nonly in %s: %s\n", newName, strings.Join(r.OnlyNew, ", "))
	}
	fmt.Fprintf(w, "\ngate: a p99 regresses when it grows by more than %g%% and the 95%% bootstrap interval of the difference excludes 0 (and Mann-Whitney p < %g where the repetitions allow it).\n",
		r.Opts.ThresholdPct, r.Opts.Alpha)
	if len(r.Regressions) == 0 {
		fmt.Fprintf(w, "no p99 regressions\n")
		return nil
	}
	fmt.Fprintf(w, "%d p99 regression(s):\n", len(r.Regressions))
	for _, d := range r.Regressions {
		fmt.Fprintf(w, "  %s / %s / %s: %s -> %s ms (%s)\n", d.Config, d.Neighbour, d.Metric, g(d.Old.Mean), g(d.New.Mean), pct(d.RelPct))
	}
	return nil
}

func fmtE(e analysis.Estimate) string {
	if !e.Valid() {
		return "-"
	}
	return fmt.Sprintf("%s ±%s", g(e.Mean), g(math.Max(e.Hi-e.Mean, e.Mean-e.Lo)))
}

func g(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.3g", v)
}

func pct(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "~"
	}
	return fmt.Sprintf("%+.1f%%", v)
}
