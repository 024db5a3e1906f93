package scenario

import (
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/kinds"
)

// Kinds registered in workloads/kinds read their keys through entryInput,
// from the entry as the TOML decoder gave it, with the same lenient types
// and file:line:field messages as the built-in kinds.

// entryInput is one [[victims]] or [[neighbours]] entry for a registered
// kind's Parse.
type entryInput struct {
	v     *validator
	p     string // "victims[0]"
	entry map[string]any
}

func (in entryInput) field(key string) string { return in.p + "." + key }

func (in entryInput) Value(key string) (any, bool) {
	x, ok := in.entry[key]
	return x, ok
}

// get decodes the key into a lenient value and reports a malformed one.
func (in entryInput) get(key string, f interface {
	lenient
	UnmarshalTOML(any) error
}) bool {
	x, ok := in.entry[key]
	if !ok {
		return false
	}
	f.UnmarshalTOML(x)
	return in.v.ok(in.field(key), f)
}

func (in entryInput) Str(key string) (string, bool) {
	var f Str
	return f.V, in.get(key, &f)
}

func (in entryInput) Strs(key string) ([]string, bool) {
	var f StrList
	return f.V, in.get(key, &f)
}

func (in entryInput) Int(key string) (int64, bool) {
	var f Int
	return f.V, in.get(key, &f)
}

func (in entryInput) Float(key string) (float64, bool) {
	var f Float
	return f.V, in.get(key, &f)
}

func (in entryInput) Size(key string) (int64, bool) {
	var f Size
	ok := in.get(key, &f)
	if ok && f.Max {
		in.Problem(key, `"max" is not a size here; write e.g. "64M"`)
		return 0, false
	}
	return f.V, ok
}

func (in entryInput) SizeOrMax(key string) (int64, bool, bool) {
	var f Size
	ok := in.get(key, &f)
	return f.V, f.Max, ok
}

func (in entryInput) Dur(key string) (time.Duration, bool) {
	var f Dur
	return f.V, in.get(key, &f)
}

func (in entryInput) Bool(key string) (bool, bool) {
	var f Bool
	return f.V, in.get(key, &f)
}

func (in entryInput) Required(key string) bool {
	if _, ok := in.entry[key]; !ok {
		in.v.add(in.field(key), "required")
		return false
	}
	return true
}

func (in entryInput) Problem(key, format string, a ...any) {
	in.v.add(in.field(key), format, a...)
}

func (in entryInput) Warn(key, format string, a ...any) {
	in.v.warn(in.field(key), format, a...)
}

// registered parses an entry of a registered kind into the parameters of
// w, a *trial.Victim or *trial.Neighbour of the given class; the
// parameters are left unset when the entry has problems (already
// reported). A session-shaped victim's own steps get the budget and class
// its step would have had.
func (v *validator) registered(p string, k *kinds.Kind, role trial.Role, entry map[string]any, s *Scenario, w any, class string) {
	before := len(v.probs)
	params := k.Parse(entryInput{v: v, p: p, entry: entry}, role, kinds.Env{
		GuestCPUs: s.Guest.CPUs, GuestMemBytes: int64(s.Guest.MemMB+s.Guest.ZramMB) << 20,
		Duration: s.Timing.Duration, Seed: s.Seed,
		VictimBudget: s.VictimBudget, NeighbourBudget: s.NeighbourBudget,
	})
	if len(v.probs) > before {
		return
	}
	if role == trial.RoleVictim && k.Session != nil && k.Session.Place != nil {
		k.Session.Place(params, s.VictimBudget, class)
	}
	if err := k.Put(w, params); err != nil {
		v.add(p+".kind", "kind %s: parameters do not encode: %v", k.Name, err)
	}
}

// strayRegistered reports keys of registered kinds written on an entry of
// a kind that does not take them (the built-in keys are checked against
// rawWorkload's fields in identity).
func (v *validator) strayRegistered(p, kind string, entry map[string]any, takes []string) {
	var stray []string
	for key := range entry {
		if slices.Contains(kinds.Keys(), key) && !slices.Contains(takes, key) && !slices.Contains(rawWorkloadKeys(), key) {
			stray = append(stray, key)
		}
	}
	slices.Sort(stray)
	for _, t := range stray {
		v.add(p+"."+t, "does not apply to kind %s (it takes %s)", kind, strings.Join(takes, ", "))
	}
}

// rawWorkloadKeys are the keys rawWorkload decodes itself.
func rawWorkloadKeys() []string {
	rt := reflect.TypeOf(rawWorkload{})
	out := make([]string, rt.NumField())
	for i := range out {
		out[i] = rt.Field(i).Tag.Get("toml")
	}
	return out
}

// registeredKey says whether an undecoded key path ("victims.command") is a
// registered kind's key, which the entry's own checks judge.
func registeredKey(path []string) bool {
	return len(path) == 2 && (path[0] == "victims" || path[0] == "neighbours") && slices.Contains(kinds.Keys(), path[1])
}

// entries are the [[victims]] and [[neighbours]] entries as plain maps,
// decoded a second time for the registered kinds' keys.
type entries struct {
	Victims    []map[string]any `toml:"victims"`
	Neighbours []map[string]any `toml:"neighbours"`
}

func entryAt(list []map[string]any, i int) map[string]any {
	if i < len(list) {
		return list[i]
	}
	return map[string]any{}
}
