package report

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/agentcgroup/agentcgroup/harness/analysis"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// Figure is one written figure: figures/<Name>.png and .svg.
type Figure struct {
	Name, Title string
}

const (
	figW = 16 * vg.Centimeter
	figH = 10 * vg.Centimeter
)

// Figures writes every figure into dir and lists them in report order.
func Figures(s *analysis.Summary, dir string) ([]Figure, error) {
	// The views below draw every configuration side by side, which dozens
	// of sweep cells would make unreadable: they show the configuration
	// cells, and the sweep cells are drawn against their values.
	all := s
	s = s.WithoutSweepCells()
	var figs []Figure
	save := func(name, title string, plots ...*plot.Plot) error {
		h := figH
		if len(plots) > 1 {
			h = figH * vg.Length(len(plots)) * 0.7
		}
		if err := saveStack(plots, figW, h, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		figs = append(figs, Figure{name, title})
		return nil
	}
	for _, v := range s.Victims {
		for _, set := range s.Sets {
			if p := cdfPlot(s, v, set); p != nil {
				if err := save("cdf-"+v+"-"+label(set), fmt.Sprintf("latency CDF of %s with neighbours %s, per configuration", v, label(set)), p); err != nil {
					return nil, err
				}
			}
		}
		for _, q := range []struct{ stat, name string }{{"p99_ms", "p99"}, {"p999_ms", "p99.9"}} {
			row := func(cfg, set string) *analysis.Row {
				return s.Row(cfg, set, analysis.LatencyMetric(v, q.stat))
			}
			p, err := groupedBars(s, s.Sets, row)
			if err != nil {
				return nil, err
			}
			bars := barsInterval(s, s.Sets, row)
			p.Title.Text = fmt.Sprintf("%s: %s latency per neighbour set (%s)", v, q.name, bars)
			p.Y.Label.Text = q.name + " latency (ms)"
			if err := save("tail-"+v+"-"+q.name, fmt.Sprintf("%s %s per neighbour set; %s", v, q.name, bars), p); err != nil {
				return nil, err
			}
		}
		var noisy []string
		for _, set := range s.Sets {
			if set != analysis.Solo {
				noisy = append(noisy, set)
			}
		}
		if len(noisy) > 0 {
			row := func(cfg, set string) *analysis.Row {
				return s.Row(cfg, set, analysis.LatencyMetric(v, "slowdown_mean"))
			}
			p, err := groupedBars(s, noisy, row)
			if err != nil {
				return nil, err
			}
			bars := barsInterval(s, noisy, row)
			p.Title.Text = fmt.Sprintf("%s: slowdown vs solo (mean latency; %s)", v, bars)
			p.Y.Label.Text = "slowdown (x)"
			one, _ := plotter.NewLine(plotter.XYs{{X: -0.5, Y: 1}, {X: float64(len(noisy)) - 0.5, Y: 1}})
			one.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
			p.Add(one)
			if err := save("slowdown-"+v, fmt.Sprintf("%s slowdown vs solo per neighbour set; %s", v, bars), p); err != nil {
				return nil, err
			}
		}
	}
	for _, role := range []string{analysis.RoleVictim, analysis.RoleNeighbour} {
		p, bars, err := eventsPlot(s, role)
		if err != nil {
			return nil, err
		}
		if p == nil {
			continue
		}
		if err := save("memory-events-"+role, fmt.Sprintf("memory.events of the %s cgroups per configuration; %s", role, bars), p); err != nil {
			return nil, err
		}
	}
	if s.Representative != nil {
		plots, err := timelinePlots(s.Representative)
		if err != nil {
			return nil, err
		}
		if plots != nil {
			if err := save("timeline", "memory and throttling timeline of trial "+s.Representative.ID, plots...); err != nil {
				return nil, err
			}
		}
	}
	if err := sweepFigures(all, save); err != nil {
		return nil, err
	}
	return figs, nil
}

// saveStack draws plots stacked vertically into <base>.png and <base>.svg.
func saveStack(plots []*plot.Plot, w, h vg.Length, base string) error {
	for _, ext := range []string{"png", "svg"} {
		c, err := draw.NewFormattedCanvas(w, h, ext)
		if err != nil {
			return err
		}
		dc := draw.New(c)
		rows := make([][]*plot.Plot, len(plots))
		for i, p := range plots {
			rows[i] = []*plot.Plot{p}
		}
		tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadY: 4 * vg.Millimeter, PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter}
		canvases := plot.Align(rows, tiles, dc)
		for i, p := range plots {
			p.Draw(canvases[i][0])
		}
		var buf bytes.Buffer
		if _, err := c.WriteTo(&buf); err != nil {
			return err
		}
		if err := fsutil.WriteFile(base+"."+ext, buf.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

// cdfPlot draws the latency distribution on a tail-stretched axis: y is
// -log10(1-F), so 90%, 99%, 99.9% are evenly spaced and the tail, which is
// what the configurations differ in, is visible.
func cdfPlot(s *analysis.Summary, victim, set string) *plot.Plot {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s latency CDF, neighbours: %s (all repetitions merged)", victim, label(set))
	p.X.Label.Text = "latency (ms, log scale)"
	p.Y.Label.Text = "percentile"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Tick.Marker = nines{}
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	n := 0
	for i, cfg := range s.Configs {
		h := s.Pooled[analysis.CellKey{Config: cfg, Neighbour: set, Victim: victim}]
		if h == nil || h.TotalCount() == 0 {
			continue
		}
		total := float64(h.TotalCount())
		top := math.Log10(total) // the last sample: 1-F would be 0
		var pts plotter.XYs
		cum := int64(0)
		for _, bar := range h.Distribution() {
			if bar.Count == 0 {
				continue
			}
			cum += bar.Count
			x := math.Max(float64(bar.To)/1000, 0.001)
			y := top
			if rest := 1 - float64(cum)/total; rest > 1/total/2 {
				y = math.Min(-math.Log10(rest), top)
			}
			pts = append(pts, plotter.XY{X: x, Y: y})
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			continue
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		l.Dashes = plotutil.Dashes(i)
		p.Add(l)
		p.Legend.Add(cfg, l)
		n++
	}
	if n == 0 {
		return nil
	}
	return p
}

// nines labels a -log10(1-F) axis with percentiles.
type nines struct{}

func (nines) Ticks(min, max float64) []plot.Tick {
	var out []plot.Tick
	for k := 0; float64(k) <= max+1e-9; k++ {
		lbl := "0%"
		if k > 0 {
			lbl = strconv.FormatFloat(100*(1-math.Pow(10, -float64(k))), 'f', -1, 64) + "%"
		}
		out = append(out, plot.Tick{Value: float64(k), Label: lbl})
	}
	return out
}

// groupedBars draws, for each group (neighbour set), one bar per
// configuration with its interval as error bar (barsInterval names it).
func groupedBars(s *analysis.Summary, groups []string, row func(cfg, set string) *analysis.Row) (*plot.Plot, error) {
	p := plot.New()
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	nc := len(s.Configs)
	step := 0.8 / float64(nc)
	barW := figW * 0.7 / vg.Length(len(groups)*nc+1)
	names := make([]string, len(groups))
	for i, g := range groups {
		names[i] = label(g)
	}
	for ci, cfg := range s.Configs {
		vals := make(plotter.Values, len(groups))
		var errs []errPoint
		for gi, set := range groups {
			r := row(cfg, set)
			if r == nil || !r.Est.Valid() {
				continue
			}
			vals[gi] = r.Est.Mean
			errs = append(errs, errPoint{x: float64(gi) + (float64(ci)-float64(nc-1)/2)*step, y: r.Est.Mean, lo: r.Est.Mean - r.Est.Lo, hi: r.Est.Hi - r.Est.Mean})
		}
		bars, err := plotter.NewBarChart(vals, barW)
		if err != nil {
			return nil, err
		}
		bars.XMin = (float64(ci) - float64(nc-1)/2) * step
		bars.Color = plotutil.Color(ci)
		bars.LineStyle.Width = 0
		p.Add(bars)
		p.Legend.Add(cfg, bars)
		if len(errs) > 0 {
			eb, err := plotter.NewYErrorBars(errPoints(errs))
			if err != nil {
				return nil, err
			}
			p.Add(eb)
		}
	}
	p.NominalX(names...)
	p.X.Label.Text = "neighbour set"
	p.Y.Min = 0
	// Headroom so the legend does not cover the tallest bar.
	if top := maxHi(s, groups, row); top > 0 {
		p.Y.Max = top * 1.3
	}
	return p, nil
}

func maxHi(s *analysis.Summary, groups []string, row func(cfg, set string) *analysis.Row) float64 {
	m := 0.0
	for _, cfg := range s.Configs {
		for _, g := range groups {
			if r := row(cfg, g); r != nil && r.Est.Valid() {
				m = math.Max(m, math.Max(r.Est.Hi, r.Est.Mean))
			}
		}
	}
	return m
}

// barsInterval says what the error bars of a grouped bar chart are, from
// the rows drawn: 95% bootstrap CIs, min-max ranges of fewer than
// analysis.MinReps repetitions, or a mix.
func barsInterval(s *analysis.Summary, groups []string, row func(cfg, set string) *analysis.Row) string {
	ci, rng := false, false
	for _, cfg := range s.Configs {
		for _, g := range groups {
			if r := row(cfg, g); r != nil && r.Est.Valid() {
				ci = ci || r.Est.Interval == analysis.IntervalCI95
				rng = rng || r.Est.Interval == analysis.IntervalRange
			}
		}
	}
	switch {
	case ci && rng:
		return fmt.Sprintf("bars: 95%% CI if n >= %d, else min-max range", analysis.MinReps)
	case rng:
		return fmt.Sprintf("bars: min-max range of n < %d reps, not a CI", analysis.MinReps)
	case ci:
		return "bars: 95% bootstrap CI"
	}
	return "single repetitions, no interval"
}

type errPoint struct{ x, y, lo, hi float64 }
type errPoints []errPoint

func (e errPoints) Len() int                        { return len(e) }
func (e errPoints) XY(i int) (float64, float64)     { return e[i].x, e[i].y }
func (e errPoints) YError(i int) (float64, float64) { return e[i].lo, e[i].hi }

// eventsPlot: groups are the memory.events counters, bars the
// configurations, values the mean per trial over all trials with
// neighbours.
func eventsPlot(s *analysis.Summary, role string) (*plot.Plot, string, error) {
	byCfg := map[string]map[string][]float64{}
	found := false
	for _, tr := range s.Trials {
		if tr.Neighbour == analysis.Solo {
			continue
		}
		if byCfg[tr.Config] == nil {
			byCfg[tr.Config] = map[string][]float64{}
		}
		for _, k := range analysis.EventKeys {
			if v, ok := tr.Metrics[analysis.GroupMetric(role, "mem."+k)]; ok {
				byCfg[tr.Config][k] = append(byCfg[tr.Config][k], v)
				found = true
			}
		}
	}
	if !found {
		return nil, "", nil
	}
	row := func(cfg, k string) *analysis.Row {
		xs := byCfg[cfg][k]
		return &analysis.Row{Config: cfg, Metric: k, Values: xs, Est: analysis.Bootstrap(xs, "events|"+role+"|"+cfg+"|"+k)}
	}
	p, err := groupedBars(s, analysis.EventKeys, row)
	if err != nil {
		return nil, "", err
	}
	bars := barsInterval(s, analysis.EventKeys, row)
	p.Title.Text = fmt.Sprintf("memory.events of the %s cgroups, mean per trial with neighbours (%s)", role, bars)
	p.X.Label.Text = "memory.events counter"
	p.Y.Label.Text = "events per trial"
	return p, bars, nil
}

// timelinePlots: memory.current per cgroup on top, cumulative memory.high
// events and CPU throttling below, from the trial's timeline samples.
func timelinePlots(tr *analysis.TrialResult) ([]*plot.Plot, error) {
	series := map[string][]trial.Sample{}
	for _, smp := range tr.Raw.Timeline {
		series[smp.Cgroup] = append(series[smp.Cgroup], smp)
	}
	if len(series) == 0 {
		return nil, nil
	}
	// Leaf cgroups only: a session's line would repeat its steps' sum.
	cgs := make([]string, 0, len(series))
	for cg := range series {
		leaf := true
		for other := range series {
			if strings.HasPrefix(other, cg+"/") {
				leaf = false
			}
		}
		if leaf {
			cgs = append(cgs, cg)
		}
	}
	sort.Strings(cgs)
	mem, ev, thr := plot.New(), plot.New(), plot.New()
	mem.Title.Text = fmt.Sprintf("trial %s: memory.current", tr.ID)
	mem.Y.Label.Text = "MiB"
	ev.Title.Text = "memory.events high (cumulative)"
	ev.Y.Label.Text = "events"
	thr.Title.Text = "cpu.stat throttled (cumulative)"
	thr.Y.Label.Text = "ms"
	thr.X.Label.Text = "time since measurement start (s)"
	for _, p := range []*plot.Plot{mem, ev, thr} {
		p.Add(plotter.NewGrid())
		p.Legend.Top = true
		p.Legend.Left = true
	}
	for i, cg := range cgs {
		ss := series[cg]
		sort.SliceStable(ss, func(a, b int) bool { return ss[a].TMs < ss[b].TMs })
		var m, e, t plotter.XYs
		for _, x := range ss {
			sec := float64(x.TMs) / 1000
			m = append(m, plotter.XY{X: sec, Y: float64(x.MemoryCurrent) / (1 << 20)})
			e = append(e, plotter.XY{X: sec, Y: float64(x.MemoryHigh)})
			t = append(t, plotter.XY{X: sec, Y: float64(x.ThrottledUS) / 1000})
		}
		for j, pts := range []plotter.XYs{m, e, t} {
			l, err := plotter.NewLine(pts)
			if err != nil {
				return nil, err
			}
			l.Color = plotutil.Color(i)
			l.Dashes = plotutil.Dashes(i)
			l.Width = vg.Points(1.2)
			[]*plot.Plot{mem, ev, thr}[j].Add(l)
			if j == 0 {
				mem.Legend.Add(cg, l)
			}
		}
	}
	mem.Legend.TextStyle.Color = color.Black
	return []*plot.Plot{mem, ev, thr}, nil
}
