package scenario

import (
	"fmt"
	"slices"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/kinds"
	"github.com/agentcgroup/agentcgroup/workloads/load"
	"github.com/agentcgroup/agentcgroup/workloads/traces"
)

// KindAgents is a scenario workload kind that stands for several recorded
// agent sessions replayed at once: a macro expanding into the registered
// trace kind. As victims, each agent becomes a trace victim in a session of
// its own; as neighbours, a trace neighbour replaying its session over and
// over. Their starts are staggered by seeded delays.
const KindAgents = "agents"

// agentsKeys are the keys an agents entry takes: its own, then how the
// sessions are replayed.
var agentsKeys = append([]string{"traces", "count", "stagger"}, kinds.ReplayKeys...)

// replayKind is the registered kind an agents entry expands into.
func replayKind() *kinds.Kind { return kinds.Lookup(trial.VictimTrace) }

// agent is one session of an agents entry.
type agent struct {
	name  string
	trace string
	delay time.Duration
}

// params are the agent's replay parameters: base (compress, mem_scale,
// max_steps) with the agent's own trace and delay.
func (a agent) params(base trial.TraceParams) *trial.TraceParams {
	p := base
	p.Trace, p.Delay = a.trace, trial.Duration(a.delay)
	return &p
}

// agentVictims expands an agents entry of victims of the given class: each
// agent is a victim of the replay kind in a session of its own, its steps
// given the victim budget and the class.
func (v *validator) agentVictims(p string, w *rawWorkload, entry map[string]any, s *Scenario, name string, names map[string]string, class string) []trial.Victim {
	k := replayKind()
	base, agents := v.agents(p, w, entry, s, name, names)
	var out []trial.Victim
	for _, a := range agents {
		params := a.params(base)
		k.Session.Place(params, s.VictimBudget, class)
		vic := trial.Victim{Name: a.name, Kind: k.Name, Session: a.name}
		if err := k.Put(&vic, params); err != nil {
			v.add(p+".kind", "kind %s: parameters do not encode: %v", k.Name, err)
		}
		out = append(out, vic)
	}
	return out
}

// agentNeighbours expands an agents entry of neighbours: each agent is a
// neighbour of the replay kind in a step of the neighbour session.
func (v *validator) agentNeighbours(p string, w *rawWorkload, entry map[string]any, s *Scenario, name string, names map[string]string) []trial.Neighbour {
	k := replayKind()
	base, agents := v.agents(p, w, entry, s, name, names)
	var out []trial.Neighbour
	for _, a := range agents {
		nb := trial.Neighbour{Name: a.name, Kind: k.Name, Session: NeighbourSession, Step: a.name}
		if err := k.Put(&nb, a.params(base)); err != nil {
			v.add(p+".kind", "kind %s: parameters do not encode: %v", k.Name, err)
		}
		out = append(out, nb)
	}
	return out
}

// agents expands an agents entry named name into its sessions, named
// <name>-1 .. <name>-<count>. With traces listed, agent k replays the k-th
// (cycling when count exceeds the list); without, every shipped trace is a
// candidate and a seeded shuffle of them is cycled. Agent k starts a seeded
// uniform delay in [0, stagger) after the others' common start. It also
// returns the replay parameters every agent shares.
func (v *validator) agents(p string, w *rawWorkload, entry map[string]any, s *Scenario, name string, names map[string]string) (trial.TraceParams, []agent) {
	in := entryInput{v: v, p: p, entry: entry}
	base := *kinds.ParseReplay(in)
	pool := traces.Names()
	shuffle := true
	if v.ok(p+".traces", &w.Traces) {
		if len(w.Traces.V) == 0 {
			v.add(p+".traces", "empty: list shipped traces (workloads/traces/<name>.json), or leave traces out to draw from all of them")
		}
		for _, t := range w.Traces.V {
			kinds.CheckTraceName(in, "traces", t)
		}
		pool, shuffle = w.Traces.V, false
	}
	count := len(pool)
	if v.ok(p+".count", &w.Count) {
		count = int(w.Count.V)
		if count < 1 || count > 64 {
			v.add(p+".count", "%d, want 1..64 sessions", count)
			count = 0
		}
	}
	var stagger time.Duration
	if v.ok(p+".stagger", &w.Stagger) {
		stagger = w.Stagger.V
		if s.Timing.Duration > 0 && stagger >= s.Timing.Duration {
			v.add(p+".stagger", "%v is not shorter than timing.duration %v: some sessions would start after the measured phase", stagger, s.Timing.Duration)
		}
	}
	if len(pool) == 0 || name == "" || count == 0 {
		return base, nil
	}
	rng := load.Rand(s.Seed, "agents/"+name)
	if shuffle {
		pool = slices.Clone(pool)
		rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	}
	var out []agent
	for k := range count {
		a := agent{name: fmt.Sprintf("%s-%d", name, k+1), trace: pool[k%len(pool)]}
		if stagger > 0 {
			a.delay = time.Duration(rng.Int64N(int64(stagger)))
		}
		switch {
		case !nameRe.MatchString(a.name):
			v.add(p+".name", "%q makes session names like %q: keep the name to at most %d characters", name, a.name, 48-len(a.name)+len(name))
			return base, nil
		case names[a.name] != "":
			v.add(p+".name", "its session %q is already the name of %s; workload names must be unique", a.name, names[a.name])
		default:
			names[a.name] = p
		}
		out = append(out, a)
	}
	return base, out
}
