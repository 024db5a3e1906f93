// Package plan expands a validated scenario into the trials of one run:
// every (configuration, neighbour set, repetition) plus the solo runs, each
// as a trial.Spec, in a randomized order fixed by the scenario's seed. A
// scenario with a [sweep] adds, after each configuration's cell, one cell
// per point of the product of the swept values that act in it.
package plan

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"reflect"
	"slices"

	"github.com/agentcgroup/agentcgroup/harness/scenario"
	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/sweep"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/kinds"
)

// Solo is the neighbour label of a trial that runs the victims alone.
const Solo = "none"

// Trial is one planned guest boot.
type Trial struct {
	ID        string     `json:"id"`
	Config    string     `json:"config"`
	Neighbour string     `json:"neighbour"` // set name, or Solo
	Rep       int        `json:"rep"`       // 0-based
	Spec      trial.Spec `json:"spec"`
}

// Plan is the ordered trials of a run.
type Plan struct {
	Scenario    string `json:"scenario"`
	Description string `json:"description,omitempty"`
	Seed        uint64 `json:"seed"`
	// Configs, Sets (neighbour sets, then Solo if solo runs are planned)
	// and Victims in the order the scenario lists them, for reports.
	Configs []string `json:"configs"`
	Sets    []string `json:"sets"`
	Victims []string `json:"victims"`
	Trials  []Trial  `json:"trials"`
	// Sweep describes the sweep cells among Configs; nil without a sweep.
	Sweep *Sweep `json:"sweep,omitempty"`
}

// Sweep is what a run's parameter sweep planned.
type Sweep struct {
	// Params are the swept parameters in harness/sweep order, Values each
	// one's values as written.
	Params []string    `json:"params"`
	Values [][]float64 `json:"values"`
	// Profiles are the policy profiles the policy parameters set (empty:
	// every profile).
	Profiles []string `json:"profiles,omitempty"`
	// Cells are the sweep cells, in Configs order.
	Cells []SweepCell `json:"cells"`
}

// SweepCell is one sweep cell: a point on top of a configuration cell.
type SweepCell struct {
	Cell string `json:"cell"`
	// Base is the configuration cell without the point ("joint-full"),
	// itself planned with the policy and flags as written.
	Base     string          `json:"base"`
	Settings []trial.Setting `json:"settings"`
}

// Cell returns the sweep cell labelled cell, nil for a configuration cell.
func (s *Sweep) Cell(cell string) *SweepCell {
	if s == nil {
		return nil
	}
	for i := range s.Cells {
		if s.Cells[i].Cell == cell {
			return &s.Cells[i]
		}
	}
	return nil
}

// ID names a trial: "<config>.<set>.r<rep>", e.g. "joint.cpu.r03"; solo
// trials use the set name "solo".
func ID(config, neighbour string, rep int) string {
	if neighbour == Solo {
		neighbour = "solo"
	}
	return fmt.Sprintf("%s.%s.r%02d", config, neighbour, rep)
}

// Build expands s. The order is interleaved: each repetition is a block
// holding every cell once, shuffled, so slow drift of the host (other load,
// thermal state) spreads over all cells instead of biasing some.
func Build(s *scenario.Scenario) (*Plan, error) {
	p := &Plan{Scenario: s.Name, Description: s.Description, Seed: s.Seed,
		Sets: slices.Clone(s.NeighbourSets)}
	cells, err := cellsOf(s)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", s.Path, err)
	}
	if !s.Sweep.Empty() {
		p.Sweep = &Sweep{Profiles: slices.Clone(s.Sweep.Profiles)}
		for _, a := range s.Sweep.Axes {
			p.Sweep.Params = append(p.Sweep.Params, a.Param)
			p.Sweep.Values = append(p.Sweep.Values, slices.Clone(a.Values))
		}
	}
	for _, c := range cells {
		p.Configs = append(p.Configs, c.label)
		if c.point != nil {
			p.Sweep.Cells = append(p.Sweep.Cells, SweepCell{Cell: c.label, Base: c.base, Settings: c.point})
		}
	}
	if s.Solo {
		p.Sets = append(p.Sets, Solo)
	}
	for _, v := range s.Victims {
		p.Victims = append(p.Victims, v.Name)
	}
	if err := checkIDs(s, cells); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(s.Seed, 0x706c616e)) // "plan"
	var errs []error
	for rep := 0; rep < s.Repetitions; rep++ {
		var block []Trial
		for _, c := range cells {
			for _, set := range s.NeighbourSets {
				block = append(block, trialFor(s, c, set, rep))
			}
			if s.Solo {
				block = append(block, trialFor(s, c, Solo, rep))
			}
		}
		rng.Shuffle(len(block), func(i, j int) { block[i], block[j] = block[j], block[i] })
		p.Trials = append(p.Trials, block...)
	}
	for _, t := range p.Trials {
		if err := t.Spec.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("trial %s: %w", t.ID, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("scenario %s produced invalid trial specs (a harness bug, please report): %w", s.Path, err)
	}
	return p, nil
}

// TrialSeed is the workloads' seed: it depends only on the scenario seed
// and the repetition, so within a repetition every configuration, every
// neighbour set and the solo run drive the victim with the same random
// choices, and comparisons (including slowdown against solo) are paired.
func TrialSeed(seed uint64, rep int) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%d", seed, rep)
	return h.Sum64()
}

// cell is one configuration as planned: configurations with a daemon run
// once per memory mode when the scenario lists several, labelled
// "<config>-<mode>". A sweep cell is such a cell plus a point: the
// configuration is the same, the point changes its policy and scheduler
// flags.
type cell struct {
	label string
	stack stack.Config
	// base, point: a sweep cell's configuration cell and parameter values
	// (nil point: a configuration cell).
	base  string
	point []trial.Setting
	// policy and schedArgs are what the cell runs with: the scenario's
	// policy and [scheduler] args, with the point applied.
	policy    string
	schedArgs []string
}

func cellsOf(s *scenario.Scenario) ([]cell, error) {
	several := len(s.MemoryModes) > 1
	var out []cell
	var errs []error
	for _, name := range s.Configs {
		base := stack.MustLookup(name, "")
		modes := s.MemoryModes
		if !base.Daemon {
			modes = modes[:1]
		}
		for _, m := range modes {
			c := stack.MustLookup(name, m)
			bc := cell{label: c.Label(several), stack: c, policy: s.Policy, schedArgs: s.Scheduler.Args}
			out = append(out, bc)
			for _, pt := range s.Sweep.Points(c) {
				policy, args, err := sweep.Apply(s.Policy, s.Sweep.Profiles, pt)
				if err != nil {
					errs = append(errs, fmt.Errorf("sweep cell %s: %w", sweep.Label(bc.label, pt), err))
					continue
				}
				out = append(out, cell{label: sweep.Label(bc.label, pt), stack: c, base: bc.label, point: pt,
					policy: policy, schedArgs: append(slices.Clone(s.Scheduler.Args), args...)})
			}
		}
	}
	return out, errors.Join(errs...)
}

// checkIDs reports trial ids that would not be valid: a sweep cell's label
// names its values, and with long neighbour set names the id can outgrow
// the 64 characters ids are limited to.
func checkIDs(s *scenario.Scenario, cells []cell) error {
	sets := slices.Clone(s.NeighbourSets)
	if s.Solo {
		sets = append(sets, Solo)
	}
	for _, c := range cells {
		for _, set := range sets {
			id := ID(c.label, set, max(s.Repetitions-1, 0))
			if len(id) > 64 {
				return fmt.Errorf("scenario %s: trial id %q is %d characters, at most 64 fit: shorten the neighbour set names or sweep fewer parameters at once", s.Path, id, len(id))
			}
		}
	}
	return nil
}

func trialFor(s *scenario.Scenario, c cell, set string, rep int) Trial {
	id := ID(c.label, set, rep)
	spec := trial.Spec{
		Version:     trial.SpecVersion,
		ID:          id,
		Scenario:    s.Name,
		Cell:        c.label,
		Stack:       c.stack,
		Neighbour:   set,
		Rep:         rep,
		Solo:        set == Solo,
		Seed:        TrialSeed(s.Seed, rep),
		Warmup:      trial.Duration(s.Timing.Warmup),
		Duration:    trial.Duration(s.Timing.Duration),
		SampleEvery: trial.Duration(s.Timing.SampleEvery),
		Swap:        trial.Swap{ZramMB: s.Guest.ZramMB},
	}
	if c.stack.Policy != stack.PolicyNone {
		spec.Policy = c.policy
	}
	spec.Sweep = slices.Clone(c.point)
	victim := trial.Session{ID: scenario.VictimSession, Budget: trial.Budget{}}
	var own []trial.Session
	for _, v := range s.Victims {
		v := cloneVictim(v)
		if !kinds.SessionShaped(v.Kind) {
			// a session-shaped victim makes its steps itself
			victim.Steps = append(victim.Steps, trial.Step{ID: v.Step, Class: s.Classes[v.Name], Budget: s.VictimBudget})
		}
		if v.Session != scenario.VictimSession {
			// an agent of an agents entry: a session of its own
			own = append(own, trial.Session{ID: v.Session})
		}
		spec.Victims = append(spec.Victims, v)
	}
	spec.Sessions = append(spec.Sessions, victim)
	spec.Sessions = append(spec.Sessions, own...)
	if set != Solo {
		noisy := trial.Session{ID: scenario.NeighbourSession}
		for _, n := range s.Neighbours {
			if s.SetOf[n.Name] != set {
				continue
			}
			noisy.Steps = append(noisy.Steps, trial.Step{ID: n.Step, Class: s.Classes[n.Name], Budget: s.NeighbourBudget})
			spec.Neighbours = append(spec.Neighbours, n)
		}
		spec.Sessions = append(spec.Sessions, noisy)
	}
	if c.stack.Scheduler != stack.SchedNone {
		spec.Scheduler = cloneProcess(s.Scheduler)
		spec.Scheduler.Args = slices.Clone(c.schedArgs)
	}
	if c.stack.Daemon {
		spec.Daemon = cloneProcess(s.Daemon)
	}
	return Trial{ID: id, Config: c.label, Neighbour: set, Rep: rep, Spec: spec}
}

func cloneProcess(p trial.Process) *trial.Process {
	p.Args = slices.Clone(p.Args)
	return &p
}

// cloneVictim copies what the parameter pointers (one per kind with a
// typed field) point to, so specs never share state.
func cloneVictim(v trial.Victim) trial.Victim {
	rv := reflect.ValueOf(&v).Elem()
	for i := range rv.NumField() {
		if f := rv.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			x := reflect.New(f.Type().Elem())
			x.Elem().Set(f.Elem())
			f.Set(x)
		}
	}
	v.Params = slices.Clone(v.Params)
	return v
}
