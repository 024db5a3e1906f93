package report

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/agentcgroup/agentcgroup/harness/analysis"
	"github.com/agentcgroup/agentcgroup/harness/plan"
	"github.com/agentcgroup/agentcgroup/harness/sweep"
	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// survivedMetric is the share of victim sessions that finished (not OOM-killed, not stalled).
var survivedMetric = analysis.GroupMetric(analysis.RoleVictim, "survived")

// sweepFigureName names the figure of one swept parameter and neighbour set.
func sweepFigureName(param, set string) string {
	return "sweep-" + param + "-" + label(set)
}

// sweepFigures draws, for each swept parameter and neighbour set, each
// victim's p99 and the victims' survival against the parameter's value,
// one line per series (configuration cell and the other parameters'
// values), with each cell's interval as error bar.
func sweepFigures(s *analysis.Summary, save func(name, title string, plots ...*plot.Plot) error) error {
	if s.Sweep == nil {
		return nil
	}
	for _, param := range s.Sweep.Params {
		series := s.SweepSeries(param)
		if len(series) == 0 {
			continue
		}
		pm, _ := sweep.Lookup(param)
		for _, set := range s.Sets {
			var metrics []string
			for _, v := range s.Victims {
				metrics = append(metrics, analysis.LatencyMetric(v, "p99_ms"))
			}
			metrics = append(metrics, survivedMetric)
			rows := func(metric string) func(cfg, set string) *analysis.Row {
				return func(cfg, g string) *analysis.Row {
					for _, ss := range series {
						if slices.Contains(ss.Cells, cfg) {
							return s.Row(cfg, g, metric)
						}
					}
					return nil
				}
			}
			var plots []*plot.Plot
			for i, m := range metrics {
				p, err := sweepPlot(s, pm, set, series, m)
				if err != nil {
					return err
				}
				if p == nil {
					continue
				}
				// The x axis names the parameter; the titles stay
				// short enough for the figure's width.
				if m == survivedMetric {
					p.Title.Text = fmt.Sprintf("victim survival, neighbours %s (%s)", label(set), barsInterval(s, []string{set}, rows(m)))
					p.Y.Label.Text = "sessions survived"
					p.Y.Min, p.Y.Max = 0, 1.05
				} else {
					p.Title.Text = fmt.Sprintf("%s p99, neighbours %s (%s)", s.Victims[i], label(set), barsInterval(s, []string{set}, rows(m)))
					p.Y.Label.Text = "p99 latency (ms)"
				}
				if len(plots) > 0 {
					p.Legend = plot.NewLegend() // one legend, on the top panel
				}
				plots = append(plots, p)
			}
			if len(plots) == 0 {
				continue
			}
			bars := barsInterval(s, []string{set}, rows(analysis.LatencyMetric(s.Victims[0], "p99_ms")))
			if err := save(sweepFigureName(param, set), fmt.Sprintf("victim p99 and survival against %s, neighbours %s; %s", param, label(set), bars), plots...); err != nil {
				return err
			}
		}
	}
	return nil
}

// sweepPlot is one panel: metric against the parameter's value for every
// series; nil when no cell of the set has the metric.
func sweepPlot(s *analysis.Summary, pm sweep.Param, set string, series []analysis.SweepSeries, metric string) (*plot.Plot, error) {
	p := plot.New()
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	lo, hi, top := math.Inf(1), math.Inf(-1), 0.0
	for _, ss := range series {
		for _, x := range ss.Values {
			lo, hi = math.Min(lo, x), math.Max(hi, x)
		}
	}
	logX := lo > 0 && hi/lo >= 10
	// Lines are offset a little sideways from each other, so equal values
	// do not hide each other's points and bars; ticks mark the true value.
	dodge := func(x float64, i int) float64 {
		off := 0.012 * (float64(i) - float64(len(series)-1)/2)
		if logX {
			return x * math.Pow(hi/lo, off)
		}
		return x + off*math.Max(hi-lo, math.Abs(lo))
	}
	var ticks []plot.Tick
	drawn := 0
	for i, ss := range series {
		var pts plotter.XYs
		var errs []errPoint
		for k, cell := range ss.Cells {
			r := s.Row(cell, set, metric)
			if r == nil || !r.Est.Valid() {
				continue
			}
			x := ss.Values[k]
			pts = append(pts, plotter.XY{X: dodge(x, i), Y: r.Est.Mean})
			errs = append(errs, errPoint{x: dodge(x, i), y: r.Est.Mean, lo: r.Est.Mean - r.Est.Lo, hi: r.Est.Hi - r.Est.Mean})
			top = math.Max(top, math.Max(r.Est.Hi, r.Est.Mean))
			if !slices.ContainsFunc(ticks, func(t plot.Tick) bool { return t.Value == x }) {
				ticks = append(ticks, plot.Tick{Value: x, Label: pm.Format(x)})
			}
		}
		if len(pts) == 0 {
			continue
		}
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, err
		}
		l.Color, sc.Color = plotutil.Color(i), plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i)
		l.Width = vg.Points(1.2)
		sc.Shape = plotutil.Shape(i)
		p.Add(l, sc)
		eb, err := plotter.NewYErrorBars(errPoints(errs))
		if err != nil {
			return nil, err
		}
		eb.Color = plotutil.Color(i)
		p.Add(eb)
		p.Legend.Add(ss.Name(), l, sc)
		drawn++
	}
	if drawn == 0 {
		return nil, nil
	}
	// Values spanning a decade or more (thresholds, delays, factors) read
	// best on a log axis; ticks sit at the swept values.
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Min, p.X.Max = lo/1.3, hi*1.3
	} else {
		pad := math.Max((hi-lo)*0.1, math.Abs(lo)*0.1)
		if pad == 0 {
			pad = 1
		}
		p.X.Min, p.X.Max = lo-pad, hi+pad
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.X.Label.Text = pm.Name
	if u := pm.Unit(); u != "" {
		p.X.Label.Text += " (" + u + ")"
	}
	p.Y.Min = 0
	// Headroom for the legend, one line per series.
	p.Y.Max = top * (1.2 + 0.1*float64(drawn))
	return p, nil
}

// sweepSection writes the Parameter sweep section: what was swept and where
// it acts, then per parameter its figures and a table of victim p99 and
// survival for every value, with the configuration cell as written for
// reference.
func sweepSection(b *bytes.Buffer, s *analysis.Summary, figs []Figure) {
	sw := s.Sweep
	if sw == nil {
		return
	}
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p("## Parameter sweep\n\n")
	var swept []string
	for i, param := range sw.Params {
		pm, _ := sweep.Lookup(param)
		vals := make([]string, len(sw.Values[i]))
		for k, v := range sw.Values[i] {
			vals[k] = pm.Format(v)
		}
		swept = append(swept, fmt.Sprintf("`%s` (%s)", param, strings.Join(vals, ", ")))
	}
	where := "every profile of the policy"
	if len(sw.Profiles) > 0 {
		where = "the policy profiles " + strings.Join(sw.Profiles, ", ")
	}
	p("This run sweeps %s, policy fields in %s. A sweep cell is a configuration cell with the values its label names applied to the agentcgroupd policy and the scx_agent_flatcg flags; the configuration cell itself (the label without them) runs the policy and flags as written. A parameter is swept only in the configurations it acts in, so it does not multiply the others with copies:\n\n",
		strings.Join(swept, ", "), where)
	for _, param := range sw.Params {
		pm, _ := sweep.Lookup(param)
		var in, out []string
		for _, c := range s.BaseConfigs() {
			has := slices.ContainsFunc(sw.Cells, func(sc plan.SweepCell) bool {
				return sc.Base == c && slices.ContainsFunc(sc.Settings, func(st trial.Setting) bool { return st.Param == param })
			})
			if has {
				in = append(in, c)
			} else {
				out = append(out, c)
			}
		}
		p("- `%s`: %s. Acts in %s. Swept in %s", param, pm.Knob, pm.Acts, orNone(in))
		if len(out) > 0 {
			p("; not in %s", strings.Join(out, ", "))
		}
		p(".\n")
	}
	p("\n")
	p("The tables above list every cell; the figures above and the comparisons under Findings cover the configuration cells only. Below, each swept parameter has victim p99 and victim survival against its values, one line per configuration cell and values of the other swept parameters (the lines' points sit slightly apart sideways so equal values stay visible; the ticks mark the values). %s\n\n", intervalLegend)

	minN := math.MaxInt
	for _, c := range sw.Cells {
		for _, set := range s.Sets {
			n := 0
			if r := s.Row(c.Cell, set, survivedMetric); r != nil {
				n = r.Est.N
			}
			minN = min(minN, n)
		}
	}
	if minN < analysis.MinReps {
		p("**Fewer than %d repetitions in some sweep cells** (as few as %d): their intervals are the lowest and highest repetition, not confidence intervals, and nothing here says one value beats another. A value that looks best is a candidate, to be confirmed in a run of its own with at least %d repetitions, paired against the configuration cell.\n\n",
			analysis.MinReps, minN, analysis.MinReps)
	} else {
		p("No sweep cell is tested against another (the grid is not one family of paired tests): overlapping intervals show no difference, and a clear separation is a candidate to confirm in a run of its own, paired against the configuration cell, not a verdict.\n\n")
	}

	for _, param := range sw.Params {
		series := s.SweepSeries(param)
		p("### `%s`\n\n", param)
		if len(series) == 0 {
			p("No cell of this run varies it.\n\n")
			continue
		}
		for _, f := range figs {
			for _, set := range s.Sets {
				if f.Name == sweepFigureName(param, set) {
					p("- %s: [PNG](figures/%s.png), [SVG](figures/%s.svg)\n", f.Title, f.Name, f.Name)
				}
			}
		}
		p("\n| neighbours | configuration | other parameters | %s | n | survived |", param)
		for _, v := range s.Victims {
			p(" `%s` p99 ms |", v)
		}
		p("\n|---|---|---|---|---|---|%s\n", strings.Repeat("---|", len(s.Victims)))
		pm, _ := sweep.Lookup(param)
		row := func(set, cell, base, others, value string) {
			n := 0
			if r := s.Row(cell, set, survivedMetric); r != nil {
				n = r.Est.N
			}
			p("| %s | %s | %s | %s | %d | %s |", label(set), base, others, value, n, est(s, cell, set, survivedMetric))
			for _, v := range s.Victims {
				p(" %s |", est(s, cell, set, analysis.LatencyMetric(v, "p99_ms")))
			}
			p("\n")
		}
		for _, set := range s.Sets {
			var bases []string
			for _, ss := range series {
				if !slices.Contains(bases, ss.Base) {
					bases = append(bases, ss.Base)
				}
			}
			for _, base := range bases {
				row(set, base, base, "as written", "as written")
				for _, ss := range series {
					if ss.Base != base {
						continue
					}
					others := sweep.Describe(ss.Others)
					if others == "" {
						others = "–"
					}
					for k, cell := range ss.Cells {
						row(set, cell, base, others, pm.Format(ss.Values[k]))
					}
				}
			}
		}
		p("\n")
	}
}

func orNone(xs []string) string {
	if len(xs) == 0 {
		return "none of this run's configurations"
	}
	return strings.Join(xs, ", ")
}
