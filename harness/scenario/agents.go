package scenario

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/load"
	"github.com/agentcgroup/agentcgroup/workloads/traces"
)

// KindAgents is a scenario workload kind that stands for several recorded
// agent sessions replayed at once: as victims, each becomes a trace victim
// in a session of its own; as neighbours, each a trace neighbour replaying
// its session over and over. Their starts are staggered by seeded delays.
const KindAgents = "agents"

// agent is one session of an agents entry.
type agent struct {
	name  string
	trace string
	delay time.Duration
	base  trial.TraceParams // compress, mem_scale, max_steps
}

func (a agent) params(b trial.Budget, class string) *trial.TraceParams {
	p := a.base
	p.Trace, p.Delay, p.StepBudget, p.StepClass = a.trace, trial.Duration(a.delay), b, class
	return &p
}

// agents expands an agents entry named name into its sessions, named
// <name>-1 .. <name>-<count>. With traces listed, agent k replays the k-th
// (cycling when count exceeds the list); without, every shipped trace is a
// candidate and a seeded shuffle of them is cycled. Agent k starts a seeded
// uniform delay in [0, stagger) after the others' common start.
func (v *validator) agents(p string, w *rawWorkload, s *Scenario, name string, names map[string]string) []agent {
	base := *v.replay(p, w)
	pool := traces.Names()
	shuffle := true
	if v.ok(p+".traces", &w.Traces) {
		if len(w.Traces.V) == 0 {
			v.add(p+".traces", "empty: list shipped traces (workloads/traces/<name>.json), or leave traces out to draw from all of them")
		}
		for _, t := range w.Traces.V {
			v.traceName(p+".traces", t)
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
		return nil
	}
	rng := load.Rand(s.Seed, "agents/"+name)
	if shuffle {
		pool = slices.Clone(pool)
		rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	}
	var out []agent
	for k := range count {
		a := agent{name: fmt.Sprintf("%s-%d", name, k+1), trace: pool[k%len(pool)], base: base}
		if stagger > 0 {
			a.delay = time.Duration(rng.Int64N(int64(stagger)))
		}
		switch {
		case !nameRe.MatchString(a.name):
			v.add(p+".name", "%q makes session names like %q: keep the name to at most %d characters", name, a.name, 48-len(a.name)+len(name))
			return nil
		case names[a.name] != "":
			v.add(p+".name", "its session %q is already the name of %s; workload names must be unique", a.name, names[a.name])
		default:
			names[a.name] = p
		}
		out = append(out, a)
	}
	return out
}

// replay reads the parameters a recorded session is replayed with.
func (v *validator) replay(p string, w *rawWorkload) *trial.TraceParams {
	tp := &trial.TraceParams{Compress: 1, MemScale: 1}
	if v.ok(p+".compress", &w.Compress) {
		tp.Compress = w.Compress.V
		if tp.Compress < 1 {
			v.add(p+".compress", "%g, want >= 1 (recorded time is divided by it)", tp.Compress)
		}
	}
	if v.ok(p+".mem_scale", &w.MemScale) {
		tp.MemScale = w.MemScale.V
		if tp.MemScale <= 0 || tp.MemScale > 4 {
			v.add(p+".mem_scale", "%g, want 0 < mem_scale <= 4", tp.MemScale)
		}
	}
	if v.ok(p+".max_steps", &w.MaxSteps) {
		tp.MaxSteps = int(w.MaxSteps.V)
		if tp.MaxSteps < 0 {
			v.add(p+".max_steps", "must be >= 0 (0 = all)")
		}
	}
	return tp
}

// traceName checks that a trace named without a path is shipped; a .json
// path names a file inside the guest, which only the guest can check.
func (v *validator) traceName(field, name string) {
	if strings.Contains(name, "/") || strings.HasSuffix(name, ".json") {
		return
	}
	if !slices.Contains(traces.Names(), name) {
		v.add(field, "unknown trace %q; shipped traces: %s", name, strings.Join(traces.Names(), ", "))
	}
}
