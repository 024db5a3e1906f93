package analysis

import (
	"math"
	"sort"

	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// VictimFidelity is how closely one trace victim's replayed steps, over
// every usable trial of a run, used the memory and CPU time their scaled
// recording asks for.
type VictimFidelity struct {
	Victim string
	Trials int
	Steps  int
	// Mem and CPU count steps per verdict (trial.Fidelity*). A step
	// without a fidelity record (it never ran, or the guest predates the
	// check) counts as not measured.
	Mem, CPU map[string]int
	// Worst are the checked steps furthest outside the tolerance, worst
	// first (at most MaxOffenders).
	Worst []FidelityOffender
}

// FidelityOffender is one step's resource that missed its recording.
type FidelityOffender struct {
	Trial    string
	Step     int
	Tool     string
	Resource string // "memory" or "cpu"
	// Expected and Actual are bytes for memory, microseconds for CPU.
	Expected, Actual, Ratio float64
}

// MaxOffenders bounds VictimFidelity.Worst.
const MaxOffenders = 5

// Fidelity summarises the replay fidelity of every trace victim in the
// trials, in victim name order.
func Fidelity(trials []*TrialResult) []VictimFidelity {
	by := map[string]*VictimFidelity{}
	for _, tr := range trials {
		for name, steps := range tr.Raw.Steps {
			f := by[name]
			if f == nil {
				f = &VictimFidelity{Victim: name, Mem: map[string]int{}, CPU: map[string]int{}}
				by[name] = f
			}
			f.Trials++
			for _, s := range steps {
				f.Steps++
				if s.Fidelity == nil {
					f.Mem[trial.FidelityNotMeasured]++
					f.CPU[trial.FidelityNotMeasured]++
					continue
				}
				f.Mem[s.Fidelity.Mem.Verdict]++
				f.CPU[s.Fidelity.CPU.Verdict]++
				for _, m := range []struct {
					res string
					m   trial.Measure
				}{{"memory", s.Fidelity.Mem}, {"cpu", s.Fidelity.CPU}} {
					if m.m.Verdict == trial.FidelityOff {
						f.Worst = append(f.Worst, FidelityOffender{Trial: tr.ID, Step: s.Step, Tool: s.Tool,
							Resource: m.res, Expected: *m.m.Expected, Actual: *m.m.Actual, Ratio: m.m.Ratio})
					}
				}
			}
		}
	}
	var out []VictimFidelity
	for _, f := range by {
		// furthest from 1 either way: half the expected use is as far
		// off as twice it
		sort.SliceStable(f.Worst, func(i, j int) bool {
			a, b := math.Abs(math.Log(f.Worst[i].Ratio)), math.Abs(math.Log(f.Worst[j].Ratio))
			if a != b {
				return a > b
			}
			if f.Worst[i].Trial != f.Worst[j].Trial {
				return f.Worst[i].Trial < f.Worst[j].Trial
			}
			return f.Worst[i].Step < f.Worst[j].Step
		})
		if len(f.Worst) > MaxOffenders {
			f.Worst = f.Worst[:MaxOffenders]
		}
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Victim < out[j].Victim })
	return out
}
