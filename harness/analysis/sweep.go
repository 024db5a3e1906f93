package analysis

import (
	"slices"
	"sort"

	"github.com/agentcgroup/agentcgroup/harness/sweep"
	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// BaseConfigs are the run's configuration cells: Configs without the sweep
// cells. The comparisons under Findings are among these only; a sweep
// explores values, and each of its cells tested against baseline would
// also dilute the family the paired tests are adjusted over.
func (s *Summary) BaseConfigs() []string {
	if s.Sweep == nil {
		return s.Configs
	}
	var out []string
	for _, c := range s.Configs {
		if s.Sweep.Cell(c) == nil {
			out = append(out, c)
		}
	}
	return out
}

// WithoutSweepCells is a shallow copy of s whose Configs are its
// configuration cells only, for views that draw every configuration side
// by side and would be unreadable with dozens of sweep cells.
func (s *Summary) WithoutSweepCells() *Summary {
	c := *s
	c.Configs = s.BaseConfigs()
	return &c
}

// SweepSeries is one line of a parameter sweep: the cells of one
// configuration cell in which one parameter takes each of its values while
// every other swept parameter keeps the values in Others.
type SweepSeries struct {
	Param  string
	Base   string
	Others []trial.Setting
	// Values ascend; Cells[i] is the cell with Values[i].
	Values []float64
	Cells  []string
}

// SweepSeries lists the series along param, in Configs order of their base
// cell and then of their first cell.
func (s *Summary) SweepSeries(param string) []SweepSeries {
	if s.Sweep == nil {
		return nil
	}
	var out []SweepSeries
	for _, cfg := range s.Configs {
		c := s.Sweep.Cell(cfg)
		if c == nil {
			continue
		}
		i := slices.IndexFunc(c.Settings, func(st trial.Setting) bool { return st.Param == param })
		if i < 0 {
			continue
		}
		others := slices.Delete(slices.Clone(c.Settings), i, i+1)
		j := slices.IndexFunc(out, func(ss SweepSeries) bool {
			return ss.Base == c.Base && slices.Equal(ss.Others, others)
		})
		if j < 0 {
			out = append(out, SweepSeries{Param: param, Base: c.Base, Others: others})
			j = len(out) - 1
		}
		out[j].Values = append(out[j].Values, c.Settings[i].Value)
		out[j].Cells = append(out[j].Cells, cfg)
	}
	for k := range out {
		ss := &out[k]
		idx := make([]int, len(ss.Values))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(a, b int) bool { return ss.Values[idx[a]] < ss.Values[idx[b]] })
		vals, cells := make([]float64, len(idx)), make([]string, len(idx))
		for i, x := range idx {
			vals[i], cells[i] = ss.Values[x], ss.Cells[x]
		}
		ss.Values, ss.Cells = vals, cells
	}
	return out
}

// Name is a series' legend: its base cell and the other parameters' values.
func (ss SweepSeries) Name() string {
	if len(ss.Others) == 0 {
		return ss.Base
	}
	return ss.Base + " " + sweep.Describe(ss.Others)
}
