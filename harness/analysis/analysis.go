// Package analysis turns a run's raw trial data into estimates: latency
// percentiles from the victims' HdrHistograms, memory.events deltas and
// explanatory counters from the cgroup snapshots, each a mean over
// repetitions with an interval (a seeded bootstrap 95% interval from
// MinReps repetitions, the plain range below), slowdown against the solo
// runs, and paired comparisons between configurations (ComparePaired). It
// reads nothing but the run directory.
package analysis

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/agentcgroup/agentcgroup/harness/plan"
	"github.com/agentcgroup/agentcgroup/harness/results"
	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// Solo is the neighbour label of solo trials.
const Solo = plan.Solo

// Summary is the analysed run.
type Summary struct {
	Dir         string
	Scenario    string
	Description string
	Configs     []string
	Sets        []string // neighbour sets, Solo last when planned
	Victims     []string
	Planned     int
	Trials      []*TrialResult // finished and usable, sorted by ID
	Failed      []TrialNote    // failed or unreadable, sorted by ID
	Skipped     []TrialNote    // not attempted
	Missing     []string       // planned, no directory (run interrupted)
	// Unavailable explains configurations that could not run as intended:
	// skipped outright, or with the scheduler/daemon not in force.
	Unavailable map[string][]string
	Rows        []*Row
	// Sweep describes the sweep cells among Configs (nil: no sweep).
	Sweep *plan.Sweep
	// Pooled merges every repetition's histogram per (config, set, victim).
	Pooled         map[CellKey]*hdrhistogram.Histogram
	Representative *TrialResult // for the timeline figure; may be nil
	Provenance     *results.Provenance
	// HostLoads are the host's 1-minute load averages at the start of
	// every attempt, in trial id order: how contended the host was.
	HostLoads []float64
	// VCPUWait is, per finished trial that measured it (its last
	// attempt), the share of its vCPUs' runnable time they waited for a
	// host CPU, in trial id order: the host's interference, trial by trial.
	VCPUWait []TrialShare
	// TrialCommits counts the finished trials per version of the code
	// that ran their last attempt (Commit "" when the run predates
	// recording it). More than one key means a resumed run mixes code.
	TrialCommits map[CodeVersion]int
	// Fidelity says, per trace victim, how closely its replayed steps
	// used the memory and CPU time of their scaled recording.
	Fidelity []VictimFidelity
}

// CodeVersion is the code that ran a trial: a commit, and whether its work
// tree had uncommitted changes.
type CodeVersion struct {
	Commit string
	Dirty  bool
}

// TrialShare is a per-trial fraction.
type TrialShare struct {
	ID    string
	Share float64
}

// TrialNote is a trial that did not contribute data, and why.
type TrialNote struct {
	ID, Config, Reason string
}

// CellKey is (configuration, neighbour set, victim); victim is "" for
// metrics that are not per victim.
type CellKey struct {
	Config, Neighbour, Victim string
}

// Row is one metric of one (configuration, neighbour set) cell.
type Row struct {
	Config    string
	Neighbour string
	Metric    string
	Values    []float64 // one per repetition, in repetition order
	Reps      []int
	Est       Estimate
}

// Analyze reads the run directory.
func Analyze(dir string) (*Summary, error) {
	run, err := results.Open(dir)
	if err != nil {
		return nil, err
	}
	p, err := run.ReadPlan()
	if err != nil {
		return nil, err
	}
	s := &Summary{
		Dir: dir, Scenario: p.Scenario, Description: p.Description,
		Configs: p.Configs, Sweep: p.Sweep, Sets: p.Sets, Victims: p.Victims, Planned: len(p.Trials),
		Unavailable: map[string][]string{}, TrialCommits: map[CodeVersion]int{}, Pooled: map[CellKey]*hdrhistogram.Histogram{},
	}
	if prov, err := run.ReadProvenance(); err == nil {
		s.Provenance = prov
		for cfg, why := range prov.Unavailable {
			s.Unavailable[cfg] = append(s.Unavailable[cfg], why)
		}
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	trials := append([]plan.Trial(nil), p.Trials...)
	sort.Slice(trials, func(i, j int) bool { return trials[i].ID < trials[j].ID })
	issues := map[string]map[string]int{} // config -> issue -> trials
	for _, t := range trials {
		o, ok, err := run.Outcome(t.ID)
		switch {
		case err != nil:
			s.Failed = append(s.Failed, TrialNote{t.ID, t.Config, err.Error()})
			continue
		case !ok:
			s.Missing = append(s.Missing, t.ID)
			continue
		}
		for _, a := range o.Attempts {
			if a.HostLoad1 > 0 {
				s.HostLoads = append(s.HostLoads, a.HostLoad1)
			}
		}
		if n := len(o.Attempts); n > 0 {
			last := o.Attempts[n-1]
			if w, ok := last.VCPUWaitShare(); ok {
				s.VCPUWait = append(s.VCPUWait, TrialShare{t.ID, w})
			}
			s.TrialCommits[CodeVersion{last.GitCommit, last.GitDirty}]++
		}
		switch {
		case o.Status == results.StatusSkipped:
			s.Skipped = append(s.Skipped, TrialNote{t.ID, t.Config, o.Reason})
			continue
		case o.Status != results.StatusOK:
			s.Failed = append(s.Failed, TrialNote{t.ID, t.Config, o.Reason})
			continue
		}
		raw, err := trial.Load(results.RawDir(run.TrialDir(t.ID)))
		if err != nil {
			s.Failed = append(s.Failed, TrialNote{t.ID, t.Config, "raw data unreadable: " + err.Error()})
			continue
		}
		if !raw.Manifest.OK {
			s.Failed = append(s.Failed, TrialNote{t.ID, t.Config, "guest manifest not ok: " + strings.Join(raw.Manifest.Errors, "; ")})
			continue
		}
		if raw.Manifest.Spec.ID != t.ID {
			s.Failed = append(s.Failed, TrialNote{t.ID, t.Config, fmt.Sprintf("directory holds trial %q", raw.Manifest.Spec.ID)})
			continue
		}
		tr, err := fromRaw(&raw)
		if err != nil {
			s.Failed = append(s.Failed, TrialNote{t.ID, t.Config, err.Error()})
			continue
		}
		// The plan's label names the cell: with several memory modes one
		// guest configuration (mem-only) is several cells (mem-only-full...).
		tr.Config = t.Config
		for _, is := range tr.Issues {
			if issues[tr.Config] == nil {
				issues[tr.Config] = map[string]int{}
			}
			issues[tr.Config][is]++
		}
		s.Trials = append(s.Trials, tr)
	}
	for cfg, m := range issues {
		n := 0
		for _, tr := range s.Trials {
			if tr.Config == cfg {
				n++
			}
		}
		for is, k := range m {
			s.Unavailable[cfg] = append(s.Unavailable[cfg], fmt.Sprintf("%s (%d of %d trials)", is, k, n))
		}
	}
	skippedBy := map[string]string{}
	for _, sk := range s.Skipped {
		skippedBy[sk.Config] = sk.Reason
	}
	for cfg, why := range skippedBy {
		if !containsStr(s.Unavailable[cfg], why) {
			s.Unavailable[cfg] = append(s.Unavailable[cfg], why)
		}
	}
	for cfg := range s.Unavailable {
		sort.Strings(s.Unavailable[cfg])
	}
	s.buildRows()
	s.pick()
	s.Fidelity = Fidelity(s.Trials)
	return s, nil
}

// buildRows collects every metric per cell and estimates it.
func (s *Summary) buildRows() {
	type cell struct{ cfg, set string }
	byCell := map[cell][]*TrialResult{}
	for _, tr := range s.Trials {
		c := cell{tr.Config, tr.Neighbour}
		byCell[c] = append(byCell[c], tr)
		for v, h := range tr.Latency {
			k := CellKey{tr.Config, tr.Neighbour, v}
			if s.Pooled[k] == nil {
				s.Pooled[k] = trial.NewLatencyHistogram()
			}
			s.Pooled[k].Merge(h)
		}
	}
	for _, cfg := range s.Configs {
		for _, set := range s.Sets {
			ts := byCell[cell{cfg, set}]
			sort.Slice(ts, func(i, j int) bool { return ts[i].Rep < ts[j].Rep })
			for _, m := range metricNames(ts) {
				r := &Row{Config: cfg, Neighbour: set, Metric: m}
				for _, tr := range ts {
					if v, ok := tr.Metrics[m]; ok {
						r.Values = append(r.Values, v)
						r.Reps = append(r.Reps, tr.Rep)
					}
				}
				r.Est = Bootstrap(r.Values, cfg+"|"+set+"|"+m)
				s.Rows = append(s.Rows, r)
			}
			if set == Solo {
				continue
			}
			s.Rows = append(s.Rows, s.slowdowns(cfg, set, ts, byCell[cell{cfg, Solo}])...)
		}
	}
}

// slowdowns pairs each repetition with the solo run of the same
// configuration and repetition (same workload seed); when that solo run is
// missing the mean of the configuration's solo runs stands in.
func (s *Summary) slowdowns(cfg, set string, ts, solo []*TrialResult) []*Row {
	if len(solo) == 0 {
		return nil
	}
	var out []*Row
	for _, v := range s.Victims {
		for _, stat := range []string{"mean_ms", "p99_ms"} {
			m := LatencyMetric(v, stat)
			soloBy := map[int]float64{}
			var all []float64
			for _, x := range solo {
				if val, ok := x.Metrics[m]; ok && val > 0 {
					soloBy[x.Rep] = val
					all = append(all, val)
				}
			}
			if len(all) == 0 {
				continue
			}
			fallback := mean(all)
			r := &Row{Config: cfg, Neighbour: set, Metric: LatencyMetric(v, "slowdown_"+strings.TrimSuffix(stat, "_ms"))}
			for _, tr := range ts {
				val, ok := tr.Metrics[m]
				if !ok {
					continue
				}
				base, ok := soloBy[tr.Rep]
				if !ok {
					base = fallback
				}
				r.Values = append(r.Values, val/base)
				r.Reps = append(r.Reps, tr.Rep)
			}
			r.Est = Bootstrap(r.Values, cfg+"|"+set+"|"+r.Metric)
			out = append(out, r)
		}
	}
	return out
}

func metricNames(ts []*TrialResult) []string {
	seen := map[string]bool{}
	var out []string
	for _, tr := range ts {
		for m := range tr.Metrics {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Row finds a metric row (nil when absent).
func (s *Summary) Row(cfg, set, metric string) *Row {
	for _, r := range s.Rows {
		if r.Config == cfg && r.Neighbour == set && r.Metric == metric {
			return r
		}
	}
	return nil
}

// pick chooses the representative trial for the timeline: in the most
// complete configuration among joint, mem-only, baseline (in that order),
// the neighbour set with the most neighbour memory.high events, and there
// the repetition whose first victim's p99 is the median.
func (s *Summary) pick() {
	if len(s.Victims) == 0 {
		return
	}
	for _, cfg := range []string{"joint", "mem-only", "baseline", "cpu-only"} {
		bestSet, best := "", -1.0
		for _, set := range s.Sets {
			if set == Solo {
				continue
			}
			if r := s.Row(cfg, set, GroupMetric(RoleNeighbour, "mem.high")); r != nil && r.Est.Valid() && r.Est.Mean > best {
				bestSet, best = set, r.Est.Mean
			}
		}
		if bestSet == "" {
			continue
		}
		var ts []*TrialResult
		for _, tr := range s.Trials {
			if tr.Config == cfg && tr.Neighbour == bestSet {
				ts = append(ts, tr)
			}
		}
		m := LatencyMetric(s.Victims[0], "p99_ms")
		sort.SliceStable(ts, func(i, j int) bool {
			if ts[i].Metrics[m] != ts[j].Metrics[m] {
				return ts[i].Metrics[m] < ts[j].Metrics[m]
			}
			return ts[i].ID < ts[j].ID
		})
		if len(ts) > 0 {
			s.Representative = ts[(len(ts)-1)/2]
			return
		}
	}
}

// TrialDir is the raw directory of a trial in this run.
func (s *Summary) TrialDir(id string) string {
	return results.RawDir(filepath.Join(s.Dir, results.TrialsDir, id))
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	t := 0.0
	for _, x := range xs {
		t += x
	}
	return t / float64(len(xs))
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
