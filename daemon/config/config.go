// Package config reads and validates the agentcgroupd policy file (TOML):
// daemon settings, per-class profiles (CPU and memory policy, escalation
// thresholds) and selectors that pick a profile for a step from its
// session's labels, its command and its class.
package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/agentcgroup/agentcgroup/bpf/mempressure"
)

// Step classes, matching enum agc_class in bpf/include/agentcgroup.h.
var Classes = map[string]uint32{
	"interactive": 1,
	"tool_burst":  2,
	"background":  3,
}

// ClassNames lists the valid classes for messages.
func ClassNames() string {
	n := make([]string, 0, len(Classes))
	for c := range Classes {
		n = append(n, c)
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

// Config is a whole policy file.
type Config struct {
	Daemon    Daemon              `toml:"daemon"`
	Profiles  map[string]*Profile `toml:"profiles"`
	Selectors []Selector          `toml:"selector"`

	Path string `toml:"-"` // file it was read from
}

// Daemon holds process-wide settings.
type Daemon struct {
	Socket      string `toml:"socket"`       // unix socket of the API
	MetricsAddr string `toml:"metrics_addr"` // host:port for /metrics; "" disables
	StateDir    string `toml:"state_dir"`    // session labels and step metadata
	EventLog    string `toml:"event_log"`    // JSON-lines transition log; "" or "-" is stderr
	CgroupMount string `toml:"cgroup_mount"` // cgroup2 mount point
	Base        string `toml:"base"`         // directory under the mount owned by the daemon
	PinDir      string `toml:"pin_dir"`      // bpffs directory for the shared maps
	MonitorOnly bool   `toml:"monitor_only"` // observe and export, change no knob
	Scheduler   bool   `toml:"scheduler"`    // load the sched_ext scheduler
	Probe       string `toml:"probe"`        // "auto" (default), "require" or "off"
	// MemoryMode picks the memory policy path: "mainline" (memory.high
	// knobs, daemon-side burst credit, the probe writes step_pressure),
	// "full" (memcg_agent_ops on a kernel with memcg_bpf_ops writes
	// step_pressure and sets the throttle delay) or "auto" (default: full
	// when the kernel has memcg_bpf_ops, else mainline).
	MemoryMode string `toml:"memory_mode"`
	// CPUPolicy says where a profile's CPU policy goes: "cgroup" scales
	// the step's cpu.weight by weight_mul (no sched_ext scheduler on the
	// node); "scheduler" leaves cpu.weight alone because a sched_ext
	// scheduler applies step_policy itself (scaling both would apply the
	// multiplier twice); "off" leaves CPU entirely to others. Default:
	// "scheduler" with daemon.scheduler = true, else "cgroup".
	CPUPolicy string `toml:"cpu_policy"`
	// Tick is the resolution of the looks a step gets while a transition
	// of it depends on time passing (THROTTLED: clear_after, freeze_after;
	// SOFT_PAUSED with thaw_after): a look falls on the tick grid at the
	// time the transition could fire, and a step whose pressure is severe
	// is looked at every tick until its freeze. Kernel signals wake a
	// step at once; a step with nothing pending is never woken by a timer.
	Tick Duration `toml:"tick"`
	// KeepEnded is how long a step whose processes all exited (or were
	// killed) keeps its cgroup, state and final counters before the
	// daemon removes it; 0 removes it at once. A client's DELETE still
	// removes it earlier. Evaluations set it so a killed step's counters
	// survive until the closing snapshot.
	KeepEnded Duration `toml:"keep_ended"`
	// NodeAvailableFloor turns on the node guard: when the node's
	// MemAvailable falls to this, the daemon kills the largest step that
	// escalation may kill (not exempt, max_freezes set), one at a time,
	// before the kernel runs out and its OOM killer stalls every
	// allocating task, protected ones included. 0 (default) is off.
	NodeAvailableFloor ByteSize `toml:"node_available_floor"`
}

// Memory modes (daemon.memory_mode).
const (
	MemoryAuto     = "auto"
	MemoryMainline = "mainline"
	MemoryFull     = "full"
)

// CPU policy targets (daemon.cpu_policy).
const (
	CPUCgroup    = "cgroup"
	CPUScheduler = "scheduler"
	CPUOff       = "off"
)

// ValidCPUPolicy checks a daemon.cpu_policy value ("" picks the default).
func ValidCPUPolicy(p string) error {
	switch p {
	case "", CPUCgroup, CPUScheduler, CPUOff:
		return nil
	}
	return fmt.Errorf("%q is not one of cgroup, scheduler, off", p)
}

// ValidMemoryMode checks a daemon.memory_mode value.
func ValidMemoryMode(m string) error {
	switch m {
	case MemoryAuto, MemoryMainline, MemoryFull:
		return nil
	}
	return fmt.Errorf("%q is not one of auto, mainline, full", m)
}

// Profile is the policy for one kind of step.
type Profile struct {
	Class      string     `toml:"class"`
	CPU        CPU        `toml:"cpu"`
	Memory     Memory     `toml:"memory"`
	Escalation Escalation `toml:"escalation"`
}

// CPU policy; the scheduler reads it through step_policy.
type CPU struct {
	WeightMul       float64  `toml:"weight_mul"`   // 1.0 = unchanged
	Slice           Duration `toml:"slice"`        // 0: scheduler default
	BurstCredit     Duration `toml:"burst_credit"` // interactive boost bucket
	RefillPerSec    Duration `toml:"refill_per_s"`
	NoThrashPenalty bool     `toml:"no_thrash_penalty"`
	// PenaltyScore is the thrash_score at or above which the scheduler
	// applies its CPU penalty to this step (step_policy.penalty_score).
	// 0 takes the profile's escalation.freeze_score, so by default the
	// penalty starts where the daemon starts counting towards a freeze;
	// set it to move the scheduler's threshold without moving the freeze.
	PenaltyScore uint32 `toml:"penalty_score"`
}

// Memory policy.
type Memory struct {
	High          ByteSize `toml:"high"`           // memory.high; 0 or "max": none
	Max           ByteSize `toml:"max"`            // memory.max; 0 or "max": none
	BurstCredit   ByteSize `toml:"burst_credit"`   // memory.high may be raised by this much ...
	BurstDuration Duration `toml:"burst_duration"` // ... for this long, once per pressure episode
	DelayA        Duration `toml:"delay_a"`        // memcg_agent_ops delay curve A (patched kernel)
	DelayK        uint32   `toml:"delay_k"`        // exponent 1..4
	DelayMax      Duration `toml:"delay_max"`
	ProtectBudget Duration `toml:"protect_budget"`
	// Protect keeps the step's memory from reclaim for up to ProtectBudget
	// of reclaim: memcg_agent_ops' below_low in full mode, memory.low on
	// the step and its ancestors in mainline mode (daemon/protect.go).
	Protect  bool `toml:"protect"`
	OOMGroup bool `toml:"oom_group"` // memory.oom.group: the step dies whole
}

// Escalation thresholds for RUNNING -> THROTTLED -> SOFT_PAUSED -> KILLED
// (the full rule is in package escalate). A step is throttled on any
// pressure, frozen after FreezeAfter of severe pressure and thawed after
// ThawAfter. Once MaxFreezes freezes are spent, severe pressure kills it
// only with a kill cause: the step is at its hard limit (memory.events max,
// oom or oom_kill grew since it was last frozen or thawed), or, with
// OthersPSIAvg10 set, other steps' memory.pressure some avg10 reached that.
// Without a cause it is frozen again, as often as the pressure returns.
type Escalation struct {
	// Never freeze or kill; the step is still throttled by the kernel.
	Exempt bool `toml:"exempt"`
	// THROTTLED when the thrash score reaches this, or memory.events high,
	// max, oom or oom_kill grows, or the PSI trigger fires. Scores are on
	// the thrash_score scale of bpf/include/agentcgroup.h (1 = 100 us of
	// throttle delay EWMA, 1..1000); 0 takes the scale's default
	// (mempressure.DefaultThrottleScore, measured in docs/PRESSURE.md).
	ThrottleScore uint32 `toml:"throttle_score"`
	// SOFT_PAUSED after FreezeAfter in THROTTLED with the score at or above
	// FreezeScore (or, with no probe, memory.events high still growing, or
	// the step at its memory.max: max, oom or oom_kill growing). 0 takes
	// the scale's default (mempressure.DefaultFreezeScore), raised to
	// ThrottleScore if that is higher.
	FreezeScore uint32   `toml:"freeze_score"`
	FreezeAfter Duration `toml:"freeze_after"`
	// Harm to other steps (percent, 0..100): when set, a step is frozen
	// only while another step's memory.pressure some avg10 is at least
	// this, or while the step is at its own memory.max, and stays frozen
	// while the others suffer; reaching it once MaxFreezes are spent is a
	// kill cause. 0 ignores other steps: steps are frozen on their own
	// pressure and killed only at their hard limit.
	OthersPSIAvg10 float64 `toml:"others_psi_some_avg10"`
	// Thaw after this long frozen ("pressure cleared"), then watch again.
	ThawAfter Duration `toml:"thaw_after"`
	// Freezes before a kill is considered. After this many, a step that
	// must be frozen again is KILLED if a kill cause holds (see above) and
	// frozen again if not. 0 never kills.
	MaxFreezes int `toml:"max_freezes"`
	// Back to RUNNING after this long with no pressure.
	ClearAfter Duration `toml:"clear_after"`
	// PSI trigger on the step's memory.pressure: "some" stall of Stall
	// within Window wakes the daemon at once. Zero disables it.
	PSIStall  Duration `toml:"psi_stall"`
	PSIWindow Duration `toml:"psi_window"`
}

// Selector maps steps to a profile; the first match wins. Empty fields match anything.
type Selector struct {
	Class   string            `toml:"class"`
	Command string            `toml:"command"` // regexp on the command line joined by spaces
	Labels  map[string]string `toml:"labels"`  // all must equal the session's labels
	Profile string            `toml:"profile"`

	re *regexp.Regexp
}

// Defaults fill in what a file leaves out.
func Defaults() Config {
	return Config{Daemon: Daemon{
		Socket:      "/run/agentcgroup/agentcgroupd.sock",
		MetricsAddr: "127.0.0.1:9464",
		StateDir:    "/run/agentcgroup",
		EventLog:    "-",
		CgroupMount: "/sys/fs/cgroup",
		Base:        "agentcgroup",
		PinDir:      "/sys/fs/bpf/agentcgroup",
		Probe:       "auto",
		MemoryMode:  "auto",
		// Kernel signals (inotify on memory.events, PSI triggers, the
		// probe's onsets) wake a step at once; timed looks fall on this
		// grid, only for steps with a time-based transition pending.
		Tick: Duration(100e6),
	}}
}

// Load reads and validates a policy file.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy %s: %w", path, err)
	}
	return Parse(path, src)
}

// Parse decodes and validates policy text; name is used in messages.
func Parse(name string, src []byte) (*Config, error) {
	c := Defaults()
	md, err := toml.Decode(string(src), &c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			key := ""
			if pe.LastKey != "" {
				key = " (" + pe.LastKey + ")"
			}
			return nil, fmt.Errorf("%s:%d%s: %s", name, pe.Position.Line, key, pe.Message)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c.Path = name
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0].String()
		return nil, fmt.Errorf("%s:%d: %s: unknown field; check the spelling against configs/policy.example.toml", name, lineOf(src, und[0]), k)
	}
	if err := c.validate(src); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) validate(src []byte) error {
	fail := func(key []string, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s: %s", c.Path, lineOf(src, key), strings.Join(key, "."), fmt.Sprintf(format, args...))
	}
	d := &c.Daemon
	switch d.Probe {
	case "auto", "require", "off":
	default:
		return fail([]string{"daemon", "probe"}, "%q is not one of auto, require, off", d.Probe)
	}
	if err := ValidCPUPolicy(d.CPUPolicy); err != nil {
		return fail([]string{"daemon", "cpu_policy"}, "%v", err)
	}
	if d.Scheduler && d.CPUPolicy != "" && d.CPUPolicy != CPUScheduler {
		return fail([]string{"daemon", "cpu_policy"}, "%q with daemon.scheduler = true: the scheduler this daemon loads applies step_policy, so use \"scheduler\"", d.CPUPolicy)
	}
	if err := ValidMemoryMode(d.MemoryMode); err != nil {
		return fail([]string{"daemon", "memory_mode"}, "%v", err)
	}
	if d.Socket == "" {
		return fail([]string{"daemon", "socket"}, "must name a unix socket path")
	}
	if d.Base == "" || strings.Contains(d.Base, "..") {
		return fail([]string{"daemon", "base"}, "%q must be a directory name below the cgroup mount", d.Base)
	}
	if d.Tick <= 0 {
		return fail([]string{"daemon", "tick"}, "must be positive, e.g. \"20ms\"")
	}
	if d.NodeAvailableFloor == Unlimited {
		return fail([]string{"daemon", "node_available_floor"}, "\"max\" would kill at once; give the MemAvailable to keep, e.g. \"64MiB\", or 0 for off")
	}
	if len(c.Profiles) == 0 {
		return fail([]string{"profiles"}, "no profiles; define at least one [profiles.<name>] per class you use")
	}
	names := make([]string, 0, len(c.Profiles))
	for n := range c.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := c.Profiles[n]
		k := func(f ...string) []string { return append([]string{"profiles", n}, f...) }
		if p.Class == "" {
			p.Class = n
		}
		if _, ok := Classes[p.Class]; !ok {
			return fail(k("class"), "unknown class %q; use one of %s", p.Class, ClassNames())
		}
		if p.CPU.WeightMul < 0 || p.CPU.WeightMul > 100 {
			return fail(k("cpu", "weight_mul"), "%v is out of range 0..100 (1.0 means unchanged)", p.CPU.WeightMul)
		}
		if p.CPU.PenaltyScore > mempressure.ScoreMax {
			return fail(k("cpu", "penalty_score"), "%d is out of range 1..%d (the thrash_score scale; 0 takes freeze_score)", p.CPU.PenaltyScore, mempressure.ScoreMax)
		}
		m := p.Memory
		if m.High != 0 && m.Max != 0 && m.High != Unlimited && m.Max != Unlimited && m.High > m.Max {
			return fail(k("memory", "high"), "%d is above memory.max %d; high must not exceed max", m.High, m.Max)
		}
		if m.BurstCredit != 0 && (m.High == 0 || m.High == Unlimited) {
			return fail(k("memory", "burst_credit"), "a burst credit needs a finite memory.high to raise")
		}
		if m.BurstCredit != 0 && m.BurstDuration == 0 {
			return fail(k("memory", "burst_duration"), "must be set when burst_credit is, e.g. \"2s\"")
		}
		if m.DelayK > 4 {
			return fail(k("memory", "delay_k"), "%d is out of range 1..4", m.DelayK)
		}
		e := &p.Escalation
		if e.ThrottleScore > mempressure.ScoreMax || e.FreezeScore > mempressure.ScoreMax {
			return fail(k("escalation"), "scores are 1..%d (the thrash_score scale; 0 takes the default)", mempressure.ScoreMax)
		}
		if e.FreezeScore != 0 && e.FreezeScore < e.ThrottleScore {
			return fail(k("escalation", "freeze_score"), "%d is below throttle_score %d", e.FreezeScore, e.ThrottleScore)
		}
		// Unset scores come from the one pressure scale the probe,
		// memcg_agent_ops and the scheduler share; an explicit
		// freeze_score below the default throttle lowers it.
		if e.ThrottleScore == 0 {
			e.ThrottleScore = mempressure.DefaultThrottleScore
			if e.FreezeScore != 0 {
				e.ThrottleScore = min(e.ThrottleScore, e.FreezeScore)
			}
		}
		if e.FreezeScore == 0 {
			e.FreezeScore = max(mempressure.DefaultFreezeScore, e.ThrottleScore)
		}
		if e.MaxFreezes < 0 {
			return fail(k("escalation", "max_freezes"), "must be >= 0")
		}
		if !(e.OthersPSIAvg10 >= 0 && e.OthersPSIAvg10 <= 100) {
			return fail(k("escalation", "others_psi_some_avg10"), "%v is out of range 0..100 (percent of time stalled; 0 ignores other steps)", e.OthersPSIAvg10)
		}
		if (e.PSIStall == 0) != (e.PSIWindow == 0) {
			return fail(k("escalation", "psi_stall"), "psi_stall and psi_window go together")
		}
		if e.PSIWindow != 0 && (e.PSIWindow.D().Microseconds() < 500000 || e.PSIWindow.D().Microseconds() > 10000000 || e.PSIStall > e.PSIWindow) {
			return fail(k("escalation", "psi_window"), "the kernel accepts windows of 500ms..10s with the stall at most the window")
		}
		if e.ClearAfter == 0 {
			e.ClearAfter = Duration(1e9)
		}
	}
	for i := range c.Selectors {
		s := &c.Selectors[i]
		key := []string{"selector", fmt.Sprint(i), "profile"}
		if _, ok := c.Profiles[s.Profile]; !ok {
			return fail(key, "selector %d names profile %q, which is not defined", i+1, s.Profile)
		}
		if s.Class != "" {
			if _, ok := Classes[s.Class]; !ok {
				return fail([]string{"selector", fmt.Sprint(i), "class"}, "selector %d: unknown class %q; use one of %s", i+1, s.Class, ClassNames())
			}
		}
		if s.Command != "" {
			re, err := regexp.Compile(s.Command)
			if err != nil {
				return fail([]string{"selector", fmt.Sprint(i), "command"}, "selector %d: bad regexp: %v", i+1, err)
			}
			s.re = re
		}
	}
	return nil
}

// Select returns the name and profile for a step: the first matching
// selector, else the profile named like the class, else the first profile
// of that class in name order.
func (c *Config) Select(class string, labels map[string]string, argv []string) (string, *Profile, error) {
	if _, ok := Classes[class]; !ok {
		return "", nil, fmt.Errorf("unknown class %q; use one of %s", class, ClassNames())
	}
	cmd := strings.Join(argv, " ")
	for _, s := range c.Selectors {
		if s.Class != "" && s.Class != class {
			continue
		}
		if s.re != nil && !s.re.MatchString(cmd) {
			continue
		}
		ok := true
		for k, v := range s.Labels {
			if labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			return s.Profile, c.Profiles[s.Profile], nil
		}
	}
	if p, ok := c.Profiles[class]; ok && p.Class == class {
		return class, p, nil
	}
	names := make([]string, 0, len(c.Profiles))
	for n, p := range c.Profiles {
		if p.Class == class {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "", nil, fmt.Errorf("no profile for class %q in %s; add [profiles.%s]", class, c.Path, class)
	}
	sort.Strings(names)
	return names[0], c.Profiles[names[0]], nil
}

// lineOf finds the line where a key is defined: the table header for its
// table part, then the first "name =" after it. It returns 1 when the key
// cannot be located (the error still names the key).
func lineOf(src []byte, key []string) int {
	lines := strings.Split(string(src), "\n")
	start := 0
	// Array-of-tables: selector.<i>.x -> the i-th [[selector]].
	if len(key) >= 2 && key[0] == "selector" {
		var idx int
		if _, err := fmt.Sscan(key[1], &idx); err == nil {
			n := -1
			for i, l := range lines {
				if strings.TrimSpace(l) == "[[selector]]" {
					n++
					if n == idx {
						start = i
						break
					}
				}
			}
			return findField(lines, start, key[len(key)-1], start+1)
		}
	}
	best := 0
	for depth := len(key) - 1; depth >= 1; depth-- {
		hdr := "[" + strings.Join(key[:depth], ".") + "]"
		for i, l := range lines {
			if strings.TrimSpace(l) == hdr {
				return findField(lines, i, key[len(key)-1], i+1)
			}
		}
	}
	return findField(lines, 0, key[len(key)-1], best+1)
}

func findField(lines []string, from int, field string, dflt int) int {
	for i := from; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if i > from && strings.HasPrefix(l, "[") {
			break
		}
		if strings.HasPrefix(l, field) && strings.HasPrefix(strings.TrimSpace(l[len(field):]), "=") {
			return i + 1
		}
	}
	return dflt
}
