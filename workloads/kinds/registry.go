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
// (Typed), so specs read as they always have; trial checks those itself
// unless the kind has a Check.
//
// Most victims run in one step cgroup the plan makes for them. A
// session-shaped victim (Session) is one workload that makes step cgroups
// of its own under its session while it runs, several at once, and logs
// them in a steps log; the runner gives it a driver step to run in and the
// means to make its steps the way the trial's configuration wants them.
package kinds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/internal/units"
	"github.com/agentcgroup/agentcgroup/workloads/latency"
)

// Kind is one workload kind.
type Kind struct {
	Name    string
	Summary string // one line, for agentwork's command list
	// Victim and Neighbour say in which roles the kind runs; each role
	// it takes needs the matching Run function (Session.Run for a
	// session-shaped victim).
	Victim, Neighbour bool
	// MacroRoles are roles the kind takes in a spec only as what a
	// scenario macro expands into: a scenario entry cannot name the kind
	// in them.
	MacroRoles []trial.Role
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
	// with the field it is about ("command: empty"). A Typed kind without
	// one is checked by trial.Spec.Validate instead.
	Check func(params any, role trial.Role, s *trial.Spec) []string
	// Typed, when set, keeps the parameters in the kind's own field of
	// the spec instead of Params.
	Typed *Typed
	// Session, when set, makes the kind's victims session-shaped.
	Session *Session
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
	// Field is the field's JSON name, where a Check's messages are
	// placed ("victims[0].trace.compress: ..."); a kind with a Check
	// needs it.
	Field        string
	PutVictim    func(v *trial.Victim, params any)
	GetVictim    func(v trial.Victim) any
	PutNeighbour func(n *trial.Neighbour, params any)
	GetNeighbour func(n trial.Neighbour) any
}

// Session is what makes a victim kind session-shaped: the victim makes its
// own step cgroups under its session while it runs (one per unit of work,
// several at once), writes a steps log (trial.TraceStep lines, then one
// trial.TraceSession line) and may begin after a delay. The plan gives it
// no step of its own; the runner runs its driver in a step of the session
// (a cgroup holding other cgroups cannot hold processes) and reports the
// session, its steps log and its delayed start in the victim's result.
type Session struct {
	// Place hands the parameters the budget and class that a scenario
	// gives a victim's step: here they are for the steps the kind makes.
	Place func(params any, budget trial.Budget, class string)
	// Delay is how long after the measured phase's start the session
	// begins; the victim's elapsed time counts from then. Nil: none.
	Delay func(params any) time.Duration
	// Run runs the session in place of RunVictim: from r.Start (waiting
	// out its delay itself) until its work is done or r.Start+r.Dur,
	// each step's latency into r.Rec. It returns the nominal duration of
	// the work it started (the victim's nominal, 0 for none).
	Run func(ctx context.Context, r SessionRun) (nominal time.Duration, err error)
}

// SessionRun is one session-shaped victim's run.
type SessionRun struct {
	VictimRun
	// MakeStep creates the step cgroup id under the victim's session for
	// a process running argv, with the class and the budget given, as
	// the trial's configuration makes steps (through the daemon, which
	// then knows its class; only the budget the configuration does not
	// manage; a static policy's entry). Nil outside a trial: the steps
	// then run as plain child processes, without cgroups of their own.
	MakeStep func(id, class string, budget trial.Budget, argv []string) (cgroupfs.Cgroup, error)
	// StepsLog is where the steps log goes ("" : nowhere).
	StepsLog string
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
	case k.Typed != nil && k.Check != nil && k.Typed.Field == "":
		panic("kinds: " + k.Name + ": a typed kind with a Check needs Typed.Field")
	case k.Session != nil && (!k.Victim || k.Session.Run == nil || k.RunVictim != nil):
		panic("kinds: " + k.Name + ": a session-shaped kind is a victim with Session.Run instead of RunVictim")
	case k.Victim && k.RunVictim == nil && k.Session == nil, k.Neighbour && k.RunNeighbour == nil, !k.Victim && !k.Neighbour:
		panic("kinds: " + k.Name + ": each role the kind takes needs its Run function")
	case registry[k.Name] != nil:
		panic("kinds: " + k.Name + " registered twice")
	}
	registry[k.Name] = k
	if k.Check == nil {
		return // trial checks its typed fields
	}
	field := trial.ParamsField
	if k.Typed != nil {
		field = k.Typed.Field
	}
	for _, role := range k.Roles() {
		trial.RegisterKind(role, k.Name, trial.RegisteredKind{
			Field:    field,
			OwnSteps: role == trial.RoleVictim && k.Session != nil,
			Check: func(field string, w any, s *trial.Spec) []error {
				return k.check(field, role, w, s)
			},
		})
	}
}

// check validates the parameters of w, a *trial.Victim or *trial.Neighbour
// of the kind in role, for trial.Spec.Validate.
func (k *Kind) check(field string, role trial.Role, w any, s *trial.Spec) []error {
	var p any
	var err error
	switch w := w.(type) {
	case *trial.Victim:
		p, err = k.VictimParams(*w)
	case *trial.Neighbour:
		p, err = k.NeighbourParams(*w)
	}
	if err != nil {
		return []error{fmt.Errorf("%s: %v", field, err)}
	}
	if unset(p) {
		// a typed field left out, said as trial says it of its own
		if role == trial.RoleVictim {
			return []error{fmt.Errorf("%s: missing parameters for kind %s", field, k.Name)}
		}
		return []error{fmt.Errorf("%s: missing parameters", field)}
	}
	var errs []error
	for _, m := range k.Check(p, role, s) {
		errs = append(errs, fmt.Errorf("%s.%s", field, m))
	}
	return errs
}

// unset says whether parameters are absent: nil, or a nil pointer from a
// typed field.
func unset(p any) bool {
	if p == nil {
		return true
	}
	v := reflect.ValueOf(p)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// Lookup returns the kind registered under name, or nil.
func Lookup(name string) *Kind { return registry[name] }

// Names lists the kinds a scenario entry can name in role, sorted.
func Names(role trial.Role) []string {
	var out []string
	for n, k := range registry {
		if k.Takes(role) && !slices.Contains(k.MacroRoles, role) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// SessionShaped says whether a victim of the named kind is session-shaped
// (Kind.Session): it makes its own steps instead of running in one.
func SessionShaped(name string) bool {
	k := registry[name]
	return k != nil && k.Session != nil
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

// sizeFlag declares a workload's byte-count flag. It reads every form
// internal/units does except "max": a workload's sizes are amounts it
// allocates or touches, where no limit means nothing.
func sizeFlag(fs *flag.FlagSet, v *trial.Bytes, name, usage string) {
	fs.Func(name, usage+" (bytes, e.g. 64M or 1.5G; default "+v.String()+")", func(s string) error {
		b, err := units.ParseBytes(s)
		if err == nil && b == units.Max {
			err = errors.New(`"max" is not a size here; write e.g. "64M"`)
		}
		if err == nil {
			*v = b
		}
		return err
	})
}
