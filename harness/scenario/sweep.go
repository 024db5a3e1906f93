package scenario

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/sweep"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/internal/tomlval"
)

// rawSweep is the [sweep] table as written: parameter names to value
// lists, plus "profiles". Nested tables are flattened, so `delay.a = [...]`
// and `"delay.a" = [...]` both name the parameter delay.a.
type rawSweep struct {
	field
	entries map[string]any
}

// sweepProfiles is the [sweep] key that scopes the policy parameters.
const sweepProfiles = "profiles"

func (x *rawSweep) UnmarshalTOML(v any) error {
	x.set = true
	m, ok := v.(map[string]any)
	if !ok {
		x.bad = fmt.Sprintf(`want a table of parameter = [values], e.g. [sweep] "delay.a" = ["100ms", "2s"]; got %s`, tomlval.Describe(v))
		return nil
	}
	x.entries = map[string]any{}
	var flatten func(prefix string, m map[string]any)
	flatten = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				flatten(prefix+k+".", sub)
				continue
			}
			x.entries[prefix+k] = v
		}
	}
	flatten("", m)
	return nil
}

// sweep validates [sweep] against the configurations and memory modes the
// scenario runs: unknown parameters, values of the wrong type or range, and
// parameters that would act in none of its configurations are problems.
// The policy itself is checked once it is known (checkSweepPolicy).
func (v *validator) sweep(r *rawFile, s *Scenario) {
	if !v.ok("sweep", &r.Sweep) {
		return
	}
	names := make([]string, 0, len(r.Sweep.entries))
	for n := range r.Sweep.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	values := map[string][]float64{}
	for _, name := range names {
		field := "sweep." + name
		raw := r.Sweep.entries[name]
		if name == sweepProfiles {
			s.Sweep.Profiles = v.sweepProfiles(field, raw)
			continue
		}
		p, ok := sweep.Lookup(name)
		if !ok {
			v.add(field, "unknown parameter; sweepable: %s (and %s, the policy profiles they set); see scenarios/SCHEMA.md", sweep.Names(), sweepProfiles)
			continue
		}
		vals, probs := p.Values(raw)
		for _, msg := range probs {
			v.add(field, "%s", msg)
		}
		if len(probs) == 0 {
			values[name] = vals
		}
	}
	var cells []stack.Config
	for _, name := range s.Configs {
		for _, m := range s.MemoryModes {
			if c, err := stack.Lookup(name, m); err == nil {
				cells = append(cells, c)
			}
		}
	}
	policyParam := false
	for _, p := range sweep.Params {
		vals, ok := values[p.Name]
		if !ok {
			continue
		}
		if !slices.ContainsFunc(cells, p.Applies) {
			v.add("sweep."+p.Name, "acts only in %s, and this scenario runs none of them (configurations %s, memory modes %s): add one or drop the parameter",
				p.Acts, strings.Join(s.Configs, ", "), joinModes(s.MemoryModes))
			continue
		}
		if f := p.Flag(); f != "" && sweep.FlagIn(s.Scheduler.Args, f) {
			v.add("scheduler.args", "sets %s, which [sweep] %s varies; drop one of them", f, p.Name)
		}
		policyParam = policyParam || p.Policy()
		s.Sweep.Axes = append(s.Sweep.Axes, sweep.Axis{Param: p.Name, Values: vals})
	}
	if s.Sweep.Profiles != nil && len(values) > 0 && !policyParam {
		v.add("sweep."+sweepProfiles, "none of the swept parameters sets a policy profile field; drop profiles")
	}
	if len(names) == 0 || (len(names) == 1 && names[0] == sweepProfiles) {
		v.add("sweep", "no parameter to sweep; list one of %s with its values, or drop [sweep]", sweep.Names())
	}
}

func (v *validator) sweepProfiles(field string, raw any) []string {
	arr, ok := raw.([]any)
	if !ok || len(arr) == 0 {
		v.add(field, `want a non-empty array of policy profile names, e.g. ["background"]`)
		return nil
	}
	var out []string
	for i, e := range arr {
		n, ok := e.(string)
		switch {
		case !ok:
			v.add(field, "value %d: want a profile name, got %s", i+1, tomlval.Describe(e))
		case slices.Contains(out, n):
			v.add(field, "%q listed twice", n)
		default:
			out = append(out, n)
		}
	}
	return out
}

func joinModes(ms []stack.Memory) string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m)
	}
	return strings.Join(out, ", ")
}

// checkSweepPolicy applies every swept value alone to the scenario's policy
// and reports the values the daemon would refuse (a freeze_score below a
// profile's throttle_score, a profile that does not exist), so the whole
// product need not be tried to find them; plan.Build applies each cell's
// full point again.
func (s *Scenario) checkSweepPolicy() Problems {
	var ps Problems
	for _, a := range s.Sweep.Axes {
		p, _ := sweep.Lookup(a.Param)
		if !p.Policy() {
			continue
		}
		for _, val := range a.Values {
			if _, _, err := sweep.Apply(s.Policy, s.Sweep.Profiles, []trial.Setting{{Param: a.Param, Value: val}}); err != nil {
				ps = append(ps, Problem{File: s.Path, Line: s.sweepLines[a.Param], Field: "sweep." + a.Param, Msg: err.Error()})
			}
		}
	}
	return ps
}
