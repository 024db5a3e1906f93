// Package kinds is the registry of workload kinds that live in one file
// each: a kind registers its scenario parameters (TOML keys, defaults,
// validation), its spec check, its run function and its standalone
// agentwork flags, and the scenario parser, spec validation, the guest
// runner and cmd/agentwork consult the registry instead of naming the
// kind. Adding such a kind is adding a file here (and its docs).
//
// A registered kind's parameters travel in the spec's Params field as the
// JSON of the value its Parse returns, or, for the kinds older than the
// registry, in their own typed field of trial.Victim or trial.Neighbour
// (Typed), so specs read as they always have; trial checks those itself.
package kinds

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/latency"
)

// Kind is one workload kind.
type Kind struct {
	Name    string
	Summary string // one line, for agentwork's command list
	// Victim and Neighbour say in which roles the kind runs; each role
	// it takes needs the matching Run function.
	Victim, Neighbour bool
	// Keys are the scenario (TOML) keys the kind takes besides name,
	// kind, set and class.
	Keys []string
	// VictimClass is the step class of a victim that names none
	// (neighbours default to background).
	VictimClass string
	// New returns a pointer to zero parameters; the spec's Params decode
	// into it.
	New func() any
	// Parse reads a scenario entry into parameters (a value New's type
	// points to, or the pointer itself), reporting problems through in.
	Parse func(in Input, role trial.Role, env Env) any
	// Check validates decoded parameters in a spec; each message starts
	// with the field it is about ("command: empty"). A Typed kind's
	// parameters are checked by trial.Spec.Validate instead.
	Check func(params any, role trial.Role, s *trial.Spec) []string
	// Typed, when set, keeps the parameters in the kind's own field of
	// the spec instead of Params.
	Typed *Typed
	// RunVictim runs the measured phase: from r.Start for r.Dur, every
	// latency into r.Rec. RunNeighbour runs until ctx ends.
	RunVictim func(ctx context.Context, r VictimRun) error
	// PrepareVictim, when set, runs before the victim says it is ready
	// (e.g. faulting in a working set); its state reaches RunVictim as
	// VictimRun.State and close runs after it.
	PrepareVictim func(params any) (state any, close func(), err error)
	// AllocProbe, when set, gives the bytes a victim's allocation probe
	// maps per operation (0: none); with a probe the runner records
	// VictimRun.Alloc into the victim's allocation-latency log.
	AllocProbe   func(params any) int64
	RunNeighbour func(ctx context.Context, r NeighbourRun) (Stats, error)
	// Flags declares the standalone `agentwork <name>` flags on fs and
	// returns what builds the parameters once fs is parsed (args are
	// the arguments after the flags).
	Flags func(fs *flag.FlagSet, role trial.Role) func(args []string) (any, error)
}

// Typed puts a kind's parameters into its field of the spec and gets
// them back; a role the kind does not take leaves its pair nil.
type Typed struct {
	PutVictim    func(v *trial.Victim, params any)
	GetVictim    func(v trial.Victim) any
	PutNeighbour func(n *trial.Neighbour, params any)
	GetNeighbour func(n trial.Neighbour) any
}

// Input is a scenario entry's parameters as the scenario parser hands them
// to Parse. A getter returns false when the key is absent or malformed; a
// malformed value is already reported, at the key's file:line.
type Input interface {
	Value(key string) (any, bool) // the raw TOML value
	Str(key string) (string, bool)
	Strs(key string) ([]string, bool)
	Int(key string) (int64, bool)
	Float(key string) (float64, bool)
	Size(key string) (int64, bool) // "64M" or a byte count
	// SizeOrMax also takes the string "max", saying so.
	SizeOrMax(key string) (n int64, max bool, ok bool)
	Dur(key string) (time.Duration, bool)
	Bool(key string) (bool, bool)
	// Required is a getter's false plus a "required" problem when absent.
	Required(key string) bool
	// Problem fails the scenario at key; Warn only prints.
	Problem(key, format string, a ...any)
	Warn(key, format string, a ...any)
}

// Env is what a scenario says beside the entry, for defaults and checks.
type Env struct {
	GuestCPUs     int
	GuestMemBytes int64 // memory plus zram
	Duration      time.Duration
	Seed          uint64
	// Budgets are the scenario's [budgets.victim] and [budgets.neighbour].
	VictimBudget, NeighbourBudget trial.Budget
}

// VictimRun is one victim's measured phase.
type VictimRun struct {
	Victim trial.Victim
	Params any // decoded Victim.Params
	Seed   uint64
	Start  time.Time // the measured phase's start
	Dur    time.Duration
	Rec    *latency.Recorder
	Alloc  *latency.Recorder // allocation latencies, with AllocProbe
	State  any               // from PrepareVictim
	Log    io.Writer         // the workloads log
}

// NeighbourRun is one neighbour, run until its context ends.
type NeighbourRun struct {
	Neighbour trial.Neighbour
	Params    any // decoded Neighbour.Params
	Seed      uint64
	Log       io.Writer
}

// Stats counts a neighbour's operations.
type Stats struct{ Ops, Failed int64 }

var registry = map[string]*Kind{}

// Register adds a kind; it is called from the kind's file's init. It
// panics on a kind that is incomplete or named twice.
func Register(k *Kind) {
	switch {
	case k.Name == "" || k.Parse == nil || k.Flags == nil:
		panic("kinds: " + k.Name + ": Name, Parse and Flags are required")
	case k.Typed == nil && (k.New == nil || k.Check == nil):
		panic("kinds: " + k.Name + ": a kind without a typed field needs New and Check")
	case k.Victim && k.RunVictim == nil, k.Neighbour && k.RunNeighbour == nil, !k.Victim && !k.Neighbour:
		panic("kinds: " + k.Name + ": each role the kind takes needs its Run function")
	case registry[k.Name] != nil:
		panic("kinds: " + k.Name + " registered twice")
	}
	registry[k.Name] = k
	if k.Typed != nil {
		return // trial checks its typed fields
	}
	for _, role := range k.Roles() {
		trial.RegisterKind(role, k.Name, func(field string, raw json.RawMessage, s *trial.Spec) []error {
			p, err := k.Decode(raw)
			if err != nil {
				return []error{fmt.Errorf("%s: %v", field, err)}
			}
			var errs []error
			for _, m := range k.Check(p, role, s) {
				errs = append(errs, fmt.Errorf("%s.%s", field, m))
			}
			return errs
		})
	}
}

// Lookup returns the kind registered under name, or nil.
func Lookup(name string) *Kind { return registry[name] }

// Names lists the kinds taking role, sorted.
func Names(role trial.Role) []string {
	var out []string
	for n, k := range registry {
		if k.Takes(role) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// All lists every registered kind, sorted by name.
func All() []*Kind {
	var out []*Kind
	for _, k := range registry {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Keys lists every key some registered kind takes, sorted.
func Keys() []string {
	seen := map[string]bool{}
	var out []string
	for _, k := range registry {
		for _, key := range k.Keys {
			if !seen[key] {
				seen[key] = true
				out = append(out, key)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Takes says whether the kind runs in role.
func (k *Kind) Takes(role trial.Role) bool {
	return (role == trial.RoleVictim && k.Victim) || (role == trial.RoleNeighbour && k.Neighbour)
}

// Roles lists the roles the kind takes.
func (k *Kind) Roles() []trial.Role {
	var out []trial.Role
	if k.Victim {
		out = append(out, trial.RoleVictim)
	}
	if k.Neighbour {
		out = append(out, trial.RoleNeighbour)
	}
	return out
}

// Encode writes parameters as the spec carries them.
func (k *Kind) Encode(params any) (json.RawMessage, error) {
	return json.Marshal(params)
}

// Put stores parameters in a victim or neighbour of the spec: its typed
// field, or Params.
func (k *Kind) Put(w any, params any) error {
	if k.Typed != nil {
		switch w := w.(type) {
		case *trial.Victim:
			k.Typed.PutVictim(w, params)
		case *trial.Neighbour:
			k.Typed.PutNeighbour(w, params)
		}
		return nil
	}
	raw, err := k.Encode(params)
	if err != nil {
		return err
	}
	switch w := w.(type) {
	case *trial.Victim:
		w.Params = raw
	case *trial.Neighbour:
		w.Params = raw
	}
	return nil
}

// VictimParams returns a victim's parameters: its typed field, or its
// Params decoded.
func (k *Kind) VictimParams(v trial.Victim) (any, error) {
	if k.Typed != nil {
		return k.Typed.GetVictim(v), nil
	}
	return k.Decode(v.Params)
}

// NeighbourParams returns a neighbour's parameters: its typed field, or
// its Params decoded.
func (k *Kind) NeighbourParams(n trial.Neighbour) (any, error) {
	if k.Typed != nil {
		return k.Typed.GetNeighbour(n), nil
	}
	return k.Decode(n.Params)
}

// Decode reads a spec's Params strictly: an unknown field is an error,
// as everywhere else in the spec.
func (k *Kind) Decode(raw json.RawMessage) (any, error) {
	p := k.New()
	if len(raw) == 0 {
		return nil, fmt.Errorf("missing parameters for kind %s", k.Name)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p); err != nil {
		return nil, fmt.Errorf("kind %s: %v", k.Name, err)
	}
	return p, nil
}

// Usage is the kind's keys, for messages.
func (k *Kind) Usage() string {
	if len(k.Keys) == 0 {
		return "no parameters"
	}
	return strings.Join(k.Keys, ", ")
}

func itoa(n int64) string { return fmt.Sprint(n) }
