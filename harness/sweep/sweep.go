// Package sweep defines the policy parameters a scenario can sweep (its
// [sweep] table, scenarios/SCHEMA.md): for each, the knob it sets (a field
// of the agentcgroupd policy's profiles, a scx_agent_flatcg flag, or both),
// the values it takes, and the configurations it acts in. A sweep point is
// an assignment of values on top of a configuration of harness/stack, which
// stays the one owner of what runs; Apply turns a point into the policy
// text and scheduler flags a trial carries.
package sweep

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/agentcgroup/agentcgroup/bpf/mempressure"
	"github.com/agentcgroup/agentcgroup/daemon/config"
	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/internal/tomlval"
	"github.com/agentcgroup/agentcgroup/internal/units"
)

// Kind is how a parameter's values are written and stored.
type Kind int

const (
	// Integer values are TOML integers.
	Integer Kind = iota
	// Number values are TOML integers or floats.
	Number
	// Duration values are Go duration strings ("50ms") in whole
	// milliseconds, stored as milliseconds.
	Duration
)

// Param is one sweepable parameter.
type Param struct {
	// Name is the key in [sweep]; Token prefixes its value in cell labels
	// ("joint-full_thr30"), short because trial ids are at most 64
	// characters.
	Name, Token string
	Kind        Kind
	// Knob says what the parameter sets, Acts where it has an effect; both
	// for messages and the report.
	Knob, Acts string
	// Example is a valid value list, for messages.
	Example string

	check   func(v float64) string // "" when v is in range
	applies func(stack.Config) bool
	// profile is the path of the policy profile field the value goes to
	// (nil: none); flag is the scx_agent_flatcg flag it goes to ("": none).
	profile []string
	flag    string
	// same reports two values that the knob cannot tell apart.
	same func(a, b float64) bool
}

// Applies reports whether the parameter changes anything in configuration
// c; a parameter that does not is not swept there, so it does not multiply
// that configuration's cells with copies.
func (p Param) Applies(c stack.Config) bool { return p.applies(c) }

// Flag is the scheduler flag the parameter sets, "" when none.
func (p Param) Flag() string { return p.flag }

// Policy reports whether the parameter sets a field of the policy's
// profiles.
func (p Param) Policy() bool { return p.profile != nil }

// Unit is the unit of stored values, for axis labels ("" for plain
// numbers).
func (p Param) Unit() string {
	if p.Kind == Duration {
		return "ms"
	}
	return ""
}

// Format writes a stored value as the scenario writes it: "50ms", "30",
// "0.25".
func (p Param) Format(v float64) string {
	switch p.Kind {
	case Duration:
		return (time.Duration(v) * time.Millisecond).String()
	case Integer:
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func scoreRange(v float64) string {
	if v < 1 || v > float64(mempressure.ScoreMax) {
		return fmt.Sprintf("%v is out of range 1..%d (the thrash_score scale of bpf/include/agentcgroup.h, docs/PRESSURE.md)", v, mempressure.ScoreMax)
	}
	return ""
}

func equal(a, b float64) bool { return a == b }

// penaltyQ8 is scx_agent_flatcg's rounding of -thrash-penalty to 1/256.
func penaltyQ8(f float64) uint32 { return max(uint32(f*256+0.5), 1) }

// Params are the sweepable parameters, in the order cell labels and
// products list them: the memory side's first, then the scheduler's.
var Params = []Param{
	{
		Name: "delay.a", Token: "a", Kind: Duration, Example: `["100ms", "2s"]`,
		Knob: "memory.delay_a of the policy's profiles: A of memcg_agent_ops' throttle delay A x (over/high)^k, capped at delay_max and the kernel's 2 s",
		Acts: "configurations in memory mode full (only memcg_agent_ops reads the curve)",
		check: func(v float64) string {
			if v < 1 || v > 600000 {
				return fmt.Sprintf("%v is out of range 1ms..10m (0, the class default, is what the policy gives when it leaves delay_a out)", time.Duration(v)*time.Millisecond)
			}
			return ""
		},
		applies: func(c stack.Config) bool { return c.Memory == stack.MemFull },
		profile: []string{"memory", "delay_a"},
		same:    equal,
	},
	{
		Name: "delay.k", Token: "k", Kind: Integer, Example: "[1, 2]",
		Knob: "memory.delay_k of the policy's profiles: the exponent k of memcg_agent_ops' throttle delay",
		Acts: "configurations in memory mode full (only memcg_agent_ops reads the curve)",
		check: func(v float64) string {
			if v < 1 || v > 4 {
				return fmt.Sprintf("%v is out of range 1..4 (memcg_agent_ops computes at most the 4th power)", v)
			}
			return ""
		},
		applies: func(c stack.Config) bool { return c.Memory == stack.MemFull },
		profile: []string{"memory", "delay_k"},
		same:    equal,
	},
	{
		Name: "freeze_score", Token: "frz", Kind: Integer, Example: "[30, 100]",
		Knob:  "escalation.freeze_score of the policy's profiles: the thrash_score held for freeze_after before agentcgroupd freezes a step; unless thrash_threshold is swept too, the scheduler's penalty threshold follows it (a profile's penalty_score defaults to its freeze_score)",
		Acts:  "configurations with agentcgroupd (mem-only, joint)",
		check: scoreRange, applies: func(c stack.Config) bool { return c.Daemon },
		profile: []string{"escalation", "freeze_score"},
		same:    equal,
	},
	{
		Name: "thrash_threshold", Token: "thr", Kind: Integer, Example: "[10, 30, 100]",
		Knob:  "the thrash_score at which scx_agent_flatcg applies its CPU penalty: cpu.penalty_score of the policy's profiles (the per-step threshold, which wins) and the scheduler's -thrash-threshold (for steps without one)",
		Acts:  "coupled configurations (joint, joint-partial): elsewhere nothing writes the step_pressure the penalty reads",
		check: scoreRange, applies: func(c stack.Config) bool { return c.Coupled },
		profile: []string{"cpu", "penalty_score"}, flag: "-thrash-threshold",
		same: equal,
	},
	{
		Name: "penalty", Token: "pen", Kind: Number, Example: "[0.1, 0.25, 0.5]",
		Knob: "scx_agent_flatcg -thrash-penalty: the factor a penalized step's CPU weight is cut by",
		Acts: "coupled configurations (joint, joint-partial): elsewhere nothing writes the step_pressure the penalty reads",
		check: func(v float64) string {
			if !(v > 0 && v <= 1) {
				return fmt.Sprintf("%v is out of range (0, 1] (a weight factor)", v)
			}
			return ""
		},
		applies: func(c stack.Config) bool { return c.Coupled },
		flag:    "-thrash-penalty",
		same:    func(a, b float64) bool { return penaltyQ8(a) == penaltyQ8(b) },
	},
}

// Lookup finds a parameter by name.
func Lookup(name string) (Param, bool) {
	for _, p := range Params {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

// Names lists the parameter names for messages.
func Names() string {
	n := make([]string, len(Params))
	for i, p := range Params {
		n[i] = p.Name
	}
	return strings.Join(n, ", ")
}

// Values reads a parameter's value list as TOML decoded it; the messages
// name the offending element and what to write instead.
func (p Param) Values(raw any) ([]float64, []string) {
	arr, ok := raw.([]any)
	if !ok {
		return nil, []string{fmt.Sprintf("want an array of values, e.g. %s", p.Example)}
	}
	if len(arr) == 0 {
		return nil, []string{fmt.Sprintf("empty: list at least one value, e.g. %s", p.Example)}
	}
	var out []float64
	var probs []string
	for i, e := range arr {
		v, msg := p.value(e)
		if msg == "" {
			msg = p.check(v)
		}
		if msg != "" {
			probs = append(probs, fmt.Sprintf("value %d: %s", i+1, msg))
			continue
		}
		if j := slices.IndexFunc(out, func(w float64) bool { return p.same(v, w) }); j >= 0 {
			why := "listed twice"
			if out[j] != v {
				why = fmt.Sprintf("gives the same setting as %s", p.Format(out[j]))
				if p.Name == "penalty" {
					why += " (scx_agent_flatcg keeps the factor in steps of 1/256)"
				}
			}
			probs = append(probs, fmt.Sprintf("value %d: %s %s; each value is a cell of its own", i+1, p.Format(v), why))
			continue
		}
		out = append(out, v)
	}
	return out, probs
}

func (p Param) value(e any) (float64, string) {
	switch p.Kind {
	case Integer:
		n, ok := e.(int64)
		if !ok {
			return 0, fmt.Sprintf("want an integer, got %s, e.g. %s", tomlval.Describe(e), p.Example)
		}
		return float64(n), ""
	case Number:
		switch n := e.(type) {
		case int64:
			return float64(n), ""
		case float64:
			return n, ""
		}
		return 0, fmt.Sprintf("want a number, got %s, e.g. %s", tomlval.Describe(e), p.Example)
	}
	s, ok := e.(string)
	if !ok {
		return 0, fmt.Sprintf("want a duration string, got %s, e.g. %s", tomlval.Describe(e), p.Example)
	}
	v, err := units.ParseDuration(s)
	if err != nil {
		return 0, err.Error()
	}
	d := v.D()
	if d%time.Millisecond != 0 {
		return 0, fmt.Sprintf("%q: the policy keeps this in whole milliseconds", s)
	}
	return float64(d / time.Millisecond), ""
}

// Axis is one swept parameter with its values in the order written.
type Axis struct {
	Param  string
	Values []float64
}

// Grid is a scenario's validated sweep.
type Grid struct {
	// Axes are in Params order.
	Axes []Axis
	// Profiles are the policy profiles the policy parameters set; nil:
	// every profile of the policy.
	Profiles []string
}

// Empty reports a scenario without a sweep.
func (g Grid) Empty() bool { return len(g.Axes) == 0 }

// Params lists the swept parameters' names.
func (g Grid) Params() []string {
	out := make([]string, len(g.Axes))
	for i, a := range g.Axes {
		out[i] = a.Param
	}
	return out
}

// Points is the product of the values of the axes that apply to c, the
// first axis varying slowest; nil when none applies.
func (g Grid) Points(c stack.Config) [][]trial.Setting {
	var axes []Axis
	for _, a := range g.Axes {
		if p, _ := Lookup(a.Param); p.Applies(c) {
			axes = append(axes, a)
		}
	}
	if len(axes) == 0 {
		return nil
	}
	pts := [][]trial.Setting{nil}
	for _, a := range axes {
		var next [][]trial.Setting
		for _, pt := range pts {
			for _, v := range a.Values {
				next = append(next, append(slices.Clone(pt), trial.Setting{Param: a.Param, Value: v}))
			}
		}
		pts = next
	}
	return pts
}

// Label names the cell of point pt on top of the configuration cell base:
// base, then "_" and each value after its parameter's token, e.g.
// "joint-full_a100ms_thr30".
func Label(base string, pt []trial.Setting) string {
	var b strings.Builder
	b.WriteString(base)
	for _, s := range pt {
		p, _ := Lookup(s.Param)
		b.WriteString("_" + p.Token + p.Format(s.Value))
	}
	return b.String()
}

// Describe writes a point as "delay.a=100ms thrash_threshold=30".
func Describe(pt []trial.Setting) string {
	parts := make([]string, len(pt))
	for i, s := range pt {
		p, _ := Lookup(s.Param)
		parts[i] = s.Param + "=" + p.Format(s.Value)
	}
	return strings.Join(parts, " ")
}

// Apply returns the policy with the point's profile fields set in
// profiles (every profile of the policy when nil) and the scheduler flags
// the point sets. The policy must still load as agentcgroupd would load it;
// the error says which setting it refused. A point that sets no profile
// field leaves the policy text as it is.
func Apply(policy string, profiles []string, pt []trial.Setting) (string, []string, error) {
	var args []string
	var fields []trial.Setting
	for _, s := range pt {
		p, ok := Lookup(s.Param)
		if !ok {
			return "", nil, fmt.Errorf("unknown sweep parameter %q; sweepable: %s", s.Param, Names())
		}
		if p.flag != "" {
			args = append(args, p.flag, p.Format(s.Value))
		}
		if p.profile != nil {
			fields = append(fields, s)
		}
	}
	if len(fields) == 0 {
		return policy, args, nil
	}
	var doc map[string]any
	if _, err := toml.Decode(policy, &doc); err != nil {
		return "", nil, fmt.Errorf("the policy is not valid TOML: %v", err)
	}
	profs, _ := doc["profiles"].(map[string]any)
	if len(profs) == 0 {
		return "", nil, fmt.Errorf("%s: the policy has no [profiles.<name>] to set it in", Describe(fields))
	}
	names := profiles
	if names == nil {
		for n := range profs {
			names = append(names, n)
		}
		slices.Sort(names)
	}
	for _, name := range names {
		prof, ok := profs[name].(map[string]any)
		if !ok {
			have := make([]string, 0, len(profs))
			for n := range profs {
				have = append(have, n)
			}
			slices.Sort(have)
			return "", nil, fmt.Errorf("profile %q is not in the policy (it has %s); fix [sweep] profiles", name, strings.Join(have, ", "))
		}
		for _, s := range fields {
			p, _ := Lookup(s.Param)
			table, _ := prof[p.profile[0]].(map[string]any)
			if table == nil {
				table = map[string]any{}
				prof[p.profile[0]] = table
			}
			table[p.profile[1]] = p.tomlValue(s.Value)
		}
	}
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(doc); err != nil {
		return "", nil, err
	}
	out := buf.String()
	if _, err := config.Parse("policy", []byte(out)); err != nil {
		// The line number is the re-encoded text's, which nobody wrote.
		msg := parseLoc.ReplaceAllString(err.Error(), "")
		return "", nil, fmt.Errorf("%s: the daemon would refuse the policy: %s; pick values the policy's profiles accept or sweep fewer profiles", Describe(fields), msg)
	}
	return out, args, nil
}

var parseLoc = regexp.MustCompile(`^policy:\d+: `)

func (p Param) tomlValue(v float64) any {
	switch p.Kind {
	case Duration:
		return p.Format(v)
	case Integer:
		return int64(v)
	}
	return v
}

// FlagIn reports whether args (a scenario's extra scheduler arguments)
// already set flag, in any of the forms Go's flag package reads.
func FlagIn(args []string, flag string) bool {
	name := strings.TrimLeft(flag, "-")
	for _, a := range args {
		a = strings.TrimLeft(a, "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}
