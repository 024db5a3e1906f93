// Package stack owns the evaluation's configurations: for each name
// (baseline, cpu-only, mem-only, joint and the partial-mode variants) the
// one typed value that says which parts of the enforcement stack run, how
// they are wired, and which cgroup knobs the policy decides instead of the
// scenario's static budgets. Planning, the in-guest runner, analysis and the
// report all read this value; nothing else compares configuration names.
package stack

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Scheduler says whether scx_agent_flatcg runs and in which mode.
type Scheduler string

const (
	// SchedNone: the kernel's fair class schedules everything.
	SchedNone Scheduler = "none"
	// SchedFull: every task in the guest is on sched_ext.
	SchedFull Scheduler = "full"
	// SchedPartial: only the agent steps' tasks are switched to SCHED_EXT
	// (the runner does it for each step process); the runner, the daemon
	// and the rest of the system stay on the fair class, as on a shared
	// node where only agent containers are under policy.
	SchedPartial Scheduler = "partial"
)

// PolicySource says who writes the per-step policy (class, weight
// multiplier, slice, boost credit, memory delay curve) into step_policy.
type PolicySource string

const (
	// PolicyNone: no step policy; knobs come from the static budgets.
	PolicyNone PolicySource = "none"
	// PolicyStatic: the trial runner writes each step's entry once, from
	// the same profiles the daemon uses, into maps pinned for the
	// scheduler. Nothing reacts afterwards.
	PolicyStatic PolicySource = "static"
	// PolicyDaemon: agentcgroupd writes the entries and keeps them up to
	// date (reloads, escalation).
	PolicyDaemon PolicySource = "daemon"
)

// Memory says how memory is controlled.
type Memory string

const (
	// MemStatic: the scenario's memory.high/memory.max, nothing dynamic.
	MemStatic Memory = "static"
	// MemMainline: agentcgroupd on a stock kernel: profile limits, burst
	// credit by raising memory.high, the in-kernel pressure probe,
	// escalation (freeze, kill).
	MemMainline Memory = "mainline"
	// MemFull: agentcgroupd with memcg_agent_ops on the patched kernel:
	// BPF sets the memory.high delay and low/min protection.
	MemFull Memory = "full"
)

// Config is one configuration under test.
type Config struct {
	// Name is the configuration's name in the table ("joint").
	Name string `json:"name"`
	// Scheduler, Policy, Daemon and Memory say what runs; Coupled says
	// the scheduler reads the step_pressure map the memory side writes
	// (the thrash-aware CPU penalty) and the step_policy map the daemon
	// writes, i.e. both sides share one pinned instance of each.
	Scheduler Scheduler    `json:"scheduler"`
	Policy    PolicySource `json:"policy"`
	Daemon    bool         `json:"daemon"`
	Memory    Memory       `json:"memory"`
	Coupled   bool         `json:"coupled"`
}

// The configurations, in report order. Each row is the whole truth about
// what its name means.
var table = []Config{
	{Name: "baseline", Scheduler: SchedNone, Policy: PolicyNone, Memory: MemStatic},
	{Name: "cpu-only", Scheduler: SchedFull, Policy: PolicyStatic, Memory: MemStatic},
	{Name: "cpu-only-partial", Scheduler: SchedPartial, Policy: PolicyStatic, Memory: MemStatic},
	{Name: "mem-only", Scheduler: SchedNone, Policy: PolicyDaemon, Daemon: true, Memory: MemMainline},
	{Name: "joint", Scheduler: SchedFull, Policy: PolicyDaemon, Daemon: true, Memory: MemMainline, Coupled: true},
	{Name: "joint-partial", Scheduler: SchedPartial, Policy: PolicyDaemon, Daemon: true, Memory: MemMainline, Coupled: true},
}

// Names lists every configuration in report order.
func Names() []string {
	out := make([]string, len(table))
	for i, c := range table {
		out[i] = c.Name
	}
	return out
}

// Lookup returns the named configuration with its memory mode set to mode
// when it has a daemon (mode "" keeps mainline). Configurations without a
// daemon ignore mode: their memory is static.
func Lookup(name string, mode Memory) (Config, error) {
	for _, c := range table {
		if c.Name != name {
			continue
		}
		if c.Daemon && mode != "" {
			c.Memory = mode
		}
		return c, c.Validate()
	}
	return Config{}, fmt.Errorf("unknown configuration %q, want one of %s", name, strings.Join(Names(), ", "))
}

// ParseMemory checks a memory mode name of a managed configuration.
func ParseMemory(s string) (Memory, error) {
	switch m := Memory(s); m {
	case MemMainline, MemFull:
		return m, nil
	}
	return "", fmt.Errorf("%q, want %q or %q", s, MemMainline, MemFull)
}

// Validate checks that the fields agree with each other.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("configuration %q: %s", c.Name, fmt.Sprintf(format, a...))
	}
	switch c.Scheduler {
	case SchedNone, SchedFull, SchedPartial:
	default:
		return bad("scheduler %q, want none, full or partial", c.Scheduler)
	}
	switch c.Memory {
	case MemStatic, MemMainline, MemFull:
	default:
		return bad("memory %q, want static, mainline or full", c.Memory)
	}
	switch c.Policy {
	case PolicyNone:
		if c.Scheduler != SchedNone || c.Daemon {
			return bad("a scheduler or daemon without a policy source")
		}
	case PolicyStatic:
		if c.Daemon || c.Scheduler == SchedNone {
			return bad("a static policy is for a scheduler without the daemon")
		}
	case PolicyDaemon:
		if !c.Daemon {
			return bad("policy from the daemon needs the daemon")
		}
	default:
		return bad("policy %q, want none, static or daemon", c.Policy)
	}
	if c.Daemon != (c.Memory != MemStatic) {
		return bad("the daemon runs exactly when memory is managed (memory %q, daemon %v)", c.Memory, c.Daemon)
	}
	if c.Coupled != (c.Daemon && c.Scheduler != SchedNone) {
		return bad("coupled must mean scheduler and daemon share their maps")
	}
	return nil
}

// ManagesCPU: the scheduler's step policy decides CPU, so the scenario's
// static cpu.weight and cpu.max are not written to step cgroups.
func (c Config) ManagesCPU() bool { return c.Scheduler != SchedNone }

// ManagesMemory: the daemon's profiles decide memory.high and memory.max,
// so the scenario's static memory budgets are not written to step cgroups.
func (c Config) ManagesMemory() bool { return c.Daemon }

// DaemonCPU is the agentcgroupd --cpu-policy value for this configuration:
// "scheduler" when a sched_ext scheduler reads step_policy (the daemon must
// not also scale cpu.weight, or the multiplier would apply twice), "off"
// when CPU is not this configuration's to manage.
func (c Config) DaemonCPU() string {
	if c.Scheduler != SchedNone {
		return "scheduler"
	}
	return "off"
}

// SchedulerArgs are scx_agent_flatcg's flags: the mode, and the pinned maps
// it shares with whoever writes the policy.
func (c Config) SchedulerArgs(pinDir string) []string {
	var a []string
	if c.Scheduler == SchedPartial {
		a = append(a, "-partial")
	}
	if c.Policy != PolicyNone {
		a = append(a, "-pinned-maps", pinDir)
	}
	return a
}

// DaemonArgs are agentcgroupd's flags beyond --config.
func (c Config) DaemonArgs() []string {
	if !c.Daemon {
		return nil
	}
	return []string{"--memory-mode", string(c.Memory), "--cpu-policy", c.DaemonCPU()}
}

// Label names a cell of a run: the configuration, suffixed with its memory
// mode when a scenario runs managed configurations in several modes.
func (c Config) Label(severalModes bool) string {
	if severalModes && c.Daemon {
		return c.Name + "-" + string(c.Memory)
	}
	return c.Name
}

// Describe is one line for reports: what runs.
func (c Config) Describe() string {
	var parts []string
	switch c.Scheduler {
	case SchedNone:
		parts = append(parts, "fair-class CPU")
	case SchedFull:
		parts = append(parts, "scx_agent_flatcg (all tasks)")
	case SchedPartial:
		parts = append(parts, "scx_agent_flatcg (agent steps only)")
	}
	switch c.Policy {
	case PolicyStatic:
		parts = append(parts, "step policy written once from the profiles")
	case PolicyDaemon:
		parts = append(parts, "step policy from agentcgroupd")
	}
	switch c.Memory {
	case MemStatic:
		parts = append(parts, "static memory budgets")
	case MemMainline:
		parts = append(parts, "agentcgroupd memory policy (mainline: memory.high, probe, escalation)")
	case MemFull:
		parts = append(parts, "agentcgroupd memory policy (memcg_agent_ops on the patched kernel)")
	}
	if c.Coupled {
		parts = append(parts, "scheduler reads the memory side's pressure (thrash penalty)")
	}
	return strings.Join(parts, "; ")
}

// UnmarshalJSON refuses a configuration whose fields disagree, so a spec
// cannot claim a name while asking for other mechanisms.
func (c *Config) UnmarshalJSON(b []byte) error {
	type plain Config
	var p plain
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*c = Config(p)
	want, err := Lookup(c.Name, c.Memory)
	if err != nil {
		return err
	}
	if want != *c {
		return fmt.Errorf("configuration %q does not match the table: got %+v, the table says %+v", c.Name, *c, want)
	}
	return nil
}

// MustLookup is Lookup for names known at compile time (tests, examples).
func MustLookup(name string, mode Memory) Config {
	c, err := Lookup(name, mode)
	if err != nil {
		panic(err)
	}
	return c
}
