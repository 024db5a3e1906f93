package trial

import (
	"encoding/json"
	"reflect"
	"slices"
	"sort"
	"strings"
)

// Role says whether a workload is measured (a victim) or noise (a
// neighbour).
type Role string

// Roles.
const (
	RoleVictim    Role = "victim"
	RoleNeighbour Role = "neighbour"
)

// ParamsField is the JSON name of Victim.Params and Neighbour.Params, where
// a registered kind's parameters travel unless it keeps a typed field.
const ParamsField = "params"

// KindCheck validates the parameters of one workload of a registered kind:
// w is the *Victim or *Neighbour, field the JSON path of its parameters
// ("victims[0].params"), and every error names a field under it.
type KindCheck func(field string, w any, s *Spec) []error

// RegisteredKind is what Validate knows of a kind registered with the
// workloads (workloads/kinds).
type RegisteredKind struct {
	// Field is the JSON name of the workload's field holding the
	// parameters: ParamsField, or the typed field of a kind older than
	// the registry.
	Field string
	Check KindCheck
	// OwnSteps says a victim of the kind makes its step cgroups itself,
	// under its session, while it runs: it names a session of the spec
	// but no step in it.
	OwnSteps bool
}

// registered holds the kinds whose spec check lives with the workloads
// (workloads/kinds) together with their parameters, run function and
// flags; only what Validate needs is here, so that Validate, on either
// side, knows them without this package importing the workloads. The
// kinds older than the registry that are not in it are checked in
// Validate itself (builtin).
var registered = map[Role]map[string]RegisteredKind{}

// RegisterKind makes a kind valid in role; it panics on a name already
// taken, in the role, by a built-in or registered kind.
func RegisterKind(role Role, name string, k RegisteredKind) {
	if _, taken := registered[role][name]; taken || builtin(role, name) {
		panic("trial: kind " + name + " registered twice as " + string(role))
	}
	if k.Check == nil || k.Field == "" {
		panic("trial: kind " + name + ": a registered kind needs Field and Check")
	}
	if registered[role] == nil {
		registered[role] = map[string]RegisteredKind{}
	}
	registered[role][name] = k
}

// RegisteredKinds lists the kinds registered for role whose parameters
// travel in Params, sorted.
func RegisteredKinds(role Role) []string {
	var out []string
	for name, k := range registered[role] {
		if k.Field == ParamsField {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// typedKinds lists the kinds of role whose parameters have a field of
// their own, built in or registered, sorted.
func typedKinds(role Role) []string {
	out := slices.Clone(builtinKinds[role])
	for name, k := range registered[role] {
		if k.Field != ParamsField {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// builtinKinds are the kinds Validate checks itself.
var builtinKinds = map[Role][]string{
	RoleVictim:    {VictimInteractive, VictimToolBurst},
	RoleNeighbour: {NeighbourCPUSpin, NeighbourForkStorm, NeighbourMemoryBlowup},
}

func builtin(role Role, name string) bool {
	return slices.Contains(builtinKinds[role], name)
}

// paramFields counts the parameter fields set in a Victim or Neighbour
// (every pointer field, one per typed kind, and Params) and lists their
// JSON names in field order, for the check that exactly one is set.
func paramFields(w any) (set int, names string) {
	rv := reflect.ValueOf(w)
	rt := rv.Type()
	var list []string
	for i := range rt.NumField() {
		f := rv.Field(i)
		if f.Kind() != reflect.Pointer && f.Type() != reflect.TypeFor[json.RawMessage]() {
			continue
		}
		list = append(list, strings.Split(rt.Field(i).Tag.Get("json"), ",")[0])
		if !f.IsNil() {
			set++
		}
	}
	return set, strings.Join(list, ", ")
}
