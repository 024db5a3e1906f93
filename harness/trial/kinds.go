package trial

import (
	"encoding/json"
	"sort"
)

// Role says whether a workload is measured (a victim) or noise (a
// neighbour).
type Role string

// Roles.
const (
	RoleVictim    Role = "victim"
	RoleNeighbour Role = "neighbour"
)

// KindCheck validates the Params of one workload of a registered kind;
// field is the JSON path of the params ("victims[0].params") and every
// error names a field under it.
type KindCheck func(field string, params json.RawMessage, s *Spec) []error

// registered holds the kinds whose parameters travel in Params rather
// than a typed field of their own. The kinds themselves (parameters,
// run function, flags) live with the workloads (workloads/kinds); only
// their spec check is here, so that Validate, on either side, knows them
// without this package importing the workloads.
var registered = map[Role]map[string]KindCheck{}

// RegisterKind makes a kind valid in role; it panics on a name already
// taken, in the role, by a built-in or registered kind.
func RegisterKind(role Role, name string, check KindCheck) {
	if builtin(role, name) || registered[role][name] != nil {
		panic("trial: kind " + name + " registered twice as " + string(role))
	}
	if registered[role] == nil {
		registered[role] = map[string]KindCheck{}
	}
	registered[role][name] = check
}

// RegisteredKinds lists the kinds registered for role, sorted.
func RegisteredKinds(role Role) []string {
	var out []string
	for k := range registered[role] {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func builtin(role Role, name string) bool {
	switch role {
	case RoleVictim:
		return name == VictimInteractive || name == VictimToolBurst || name == VictimTrace
	case RoleNeighbour:
		return name == NeighbourCPUSpin || name == NeighbourForkStorm || name == NeighbourMemoryBlowup || name == NeighbourTrace
	}
	return false
}
