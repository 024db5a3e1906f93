package trial

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/internal/units"
)

// Validate reports every problem in the spec, each naming the field and
// what to write instead.
func (s *Spec) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if s.Version != SpecVersion {
		add("version: %d, this build reads version %d (rebuild host and guest binaries from one commit)", s.Version, SpecVersion)
	}
	if err := checkID("id", s.ID); err != nil {
		add("%v", err)
	}
	if err := checkID("cell", s.Cell); err != nil {
		add("%v", err)
	}
	if err := s.Stack.Validate(); err != nil {
		add("stack: %v", err)
	} else if want, err := stack.Lookup(s.Stack.Name, s.Stack.Memory); err != nil || want != s.Stack {
		add("stack: %+v does not match configuration %q of the table", s.Stack, s.Stack.Name)
	}
	if s.Stack.Policy != stack.PolicyNone && strings.TrimSpace(s.Policy) == "" {
		add("policy: configuration %q takes its step policy from profiles; give the agentcgroupd policy TOML", s.Stack.Name)
	}
	seenParam := map[string]bool{}
	for i, st := range s.Sweep {
		switch {
		case st.Param == "":
			add("sweep[%d].param: empty; name the swept parameter", i)
		case seenParam[st.Param]:
			add("sweep[%d].param %q: set twice", i, st.Param)
		case math.IsNaN(st.Value) || math.IsInf(st.Value, 0):
			add("sweep[%d].value: %v is not a finite number", i, st.Value)
		}
		seenParam[st.Param] = true
	}
	if s.Duration <= 0 {
		add("duration: must be > 0 (e.g. \"5s\")")
	}
	if s.Warmup < 0 {
		add("warmup: must be >= 0")
	}
	if s.SampleEvery < 0 {
		add("sample_every: must be >= 0")
	}
	if s.Swap.ZramMB < 0 {
		add("swap.zram_mb: must be >= 0 (0 = no swap)")
	}

	steps := map[string]bool{}
	sessions := map[string]bool{}
	for i, se := range s.Sessions {
		p := fmt.Sprintf("sessions[%d]", i)
		if err := checkID(p+".id", se.ID); err != nil {
			add("%v", err)
		}
		if sessions[se.ID] {
			add("%s.id %q: duplicate session", p, se.ID)
		}
		sessions[se.ID] = true
		errs = append(errs, se.Budget.Check(p+".budget")...)
		for j, st := range se.Steps {
			q := fmt.Sprintf("%s.steps[%d]", p, j)
			if err := checkID(q+".id", st.ID); err != nil {
				add("%v", err)
			}
			key := se.ID + "/" + st.ID
			if steps[key] {
				add("%s.id %q: duplicate step in session %q", q, st.ID, se.ID)
			}
			steps[key] = true
			if err := CheckClass(q+".class", st.Class); err != nil {
				errs = append(errs, err)
			}
			errs = append(errs, st.Budget.Check(q+".budget")...)
		}
	}

	names := map[string]bool{}
	checkName := func(p, name string) {
		if err := checkID(p+".name", name); err != nil {
			add("%v", err)
		}
		if names[name] {
			add("%s.name %q: duplicate workload name", p, name)
		}
		names[name] = true
	}
	needStep := func(p, se, st string) {
		if !sessions[se] {
			add("%s.session %q: no such session in sessions[]", p, se)
			return
		}
		if !steps[se+"/"+st] {
			add("%s.step %q: no such step in session %q", p, st, se)
		}
	}

	if len(s.Victims) == 0 {
		add("victims: at least one victim is needed (nothing would be measured)")
	}
	for i, v := range s.Victims {
		p := fmt.Sprintf("victims[%d]", i)
		checkName(p, v.Name)
		if set, fields := paramFields(v); set != 1 {
			add("%s: set exactly one of %s (the one matching kind %q)", p, fields, v.Kind)
		}
		switch v.Kind {
		case VictimInteractive:
			needStep(p, v.Session, v.Step)
			if v.Interactive == nil {
				add("%s.interactive: missing parameters for kind interactive", p)
			} else {
				errs = append(errs, v.Interactive.check(p+".interactive")...)
				if v.Interactive.Idle > 0 && v.Interactive.Idle >= s.Duration {
					add("%s.interactive.idle: %v is not shorter than the measured phase %v: no request would run", p, v.Interactive.Idle, s.Duration)
				}
			}
		case VictimToolBurst:
			needStep(p, v.Session, v.Step)
			if v.ToolBurst == nil {
				add("%s.tool_burst: missing parameters for kind tool_burst", p)
			} else {
				errs = append(errs, v.ToolBurst.check(p+".tool_burst")...)
			}
		default:
			k, ok := registered[RoleVictim][v.Kind]
			if !ok {
				add("%s.kind %q: want %s or a registered kind (%s)", p, v.Kind, strings.Join(typedKinds(RoleVictim), ", "), strings.Join(RegisteredKinds(RoleVictim), ", "))
				break
			}
			if k.OwnSteps {
				if !sessions[v.Session] {
					add("%s.session %q: no such session in sessions[]", p, v.Session)
				}
			} else {
				needStep(p, v.Session, v.Step)
			}
			errs = append(errs, k.Check(p+"."+k.Field, &v, s)...)
		}
	}

	if s.Solo && len(s.Neighbours) > 0 {
		add("neighbours: a solo trial runs the victims alone; drop the neighbours or set solo false")
	}
	for i, n := range s.Neighbours {
		p := fmt.Sprintf("neighbours[%d]", i)
		checkName(p, n.Name)
		needStep(p, n.Session, n.Step)
		if set, fields := paramFields(n); set != 1 {
			add("%s: set exactly one of %s (the one matching kind %q)", p, fields, n.Kind)
		}
		switch n.Kind {
		case NeighbourCPUSpin:
			if n.CPUSpin == nil {
				add("%s.cpu_spin: missing parameters", p)
			} else if n.CPUSpin.Threads < 1 || n.CPUSpin.Threads > 256 {
				add("%s.cpu_spin.threads: %d, want 1..256", p, n.CPUSpin.Threads)
			}
		case NeighbourForkStorm:
			if n.ForkStorm == nil {
				add("%s.fork_storm: missing parameters", p)
			} else {
				if n.ForkStorm.Rate < 0 {
					add("%s.fork_storm.rate: must be >= 0 (0 = as fast as possible)", p)
				}
				if n.ForkStorm.Hold < 0 {
					add("%s.fork_storm.hold: must be >= 0", p)
				}
				if n.ForkStorm.Concurrency < 1 || n.ForkStorm.Concurrency > 4096 {
					add("%s.fork_storm.concurrency: %d, want 1..4096", p, n.ForkStorm.Concurrency)
				}
			}
		case NeighbourMemoryBlowup:
			if n.MemoryBlowup == nil {
				add("%s.memory_blowup: missing parameters", p)
			} else {
				m := n.MemoryBlowup
				if m.TargetBytes <= 0 {
					add("%s.memory_blowup.target_bytes: must be > 0", p)
				}
				if m.RateBytesPerSec < 0 {
					add("%s.memory_blowup.rate_bytes_per_sec: must be >= 0 (0 = as fast as possible)", p)
				}
				if m.ChunkBytes < 0 || (m.ChunkBytes > 0 && m.ChunkBytes < 4096) {
					add("%s.memory_blowup.chunk_bytes: want 0 (default 1M) or >= 4096", p)
				}
				errs = append(errs, finite(p+".memory_blowup", size{"target_bytes", m.TargetBytes}, size{"rate_bytes_per_sec", m.RateBytesPerSec}, size{"chunk_bytes", m.ChunkBytes})...)
				switch m.Fill {
				case "", FillSparse, FillRandom:
				default:
					add("%s.memory_blowup.fill: %q, want %q or %q", p, m.Fill, FillSparse, FillRandom)
				}
				if m.Threads < 0 || m.Threads > 256 {
					add("%s.memory_blowup.threads: %d, want 0..256 (0 = one thread)", p, m.Threads)
				}
			}
		default:
			k, ok := registered[RoleNeighbour][n.Kind]
			if !ok {
				add("%s.kind %q: want %s or a registered kind (%s)", p, n.Kind, strings.Join(typedKinds(RoleNeighbour), ", "), strings.Join(RegisteredKinds(RoleNeighbour), ", "))
				break
			}
			errs = append(errs, k.Check(p+"."+k.Field, &n, s)...)
		}
	}

	for _, pr := range []struct {
		name string
		p    *Process
	}{{"scheduler", s.Scheduler}, {"daemon", s.Daemon}} {
		if pr.p != nil && pr.p.ReadyWait < 0 {
			add("%s.ready_wait: must be >= 0", pr.name)
		}
	}
	if s.Scheduler != nil && s.Stack.Scheduler == stack.SchedNone {
		add("scheduler: configuration %q runs on the fair class; it starts no scheduler to adjust", s.Stack.Name)
	}
	if s.Daemon != nil && !s.Stack.Daemon {
		add("daemon: configuration %q runs no daemon to adjust", s.Stack.Name)
	}
	return errors.Join(errs...)
}

// CheckClass checks a step class; field names it in the error.
func CheckClass(field, c string) error {
	switch c {
	case "", ClassDefault, ClassInteractive, ClassToolBurst, ClassBackground:
		return nil
	}
	return fmt.Errorf("%s %q: want default, interactive, tool_burst or background", field, c)
}

// Check reports every problem with the budget, each error naming the
// knob under p ("sessions[0].budget.cpu_weight: ...").
func (b Budget) Check(p string) []error {
	var errs []error
	if b.CPUWeight != 0 && (b.CPUWeight < 1 || b.CPUWeight > 10000) {
		errs = append(errs, fmt.Errorf("%s.cpu_weight: %d, want 1..10000 (0 = default 100)", p, b.CPUWeight))
	}
	if b.CPUMax != "" {
		if err := checkCPUMax(b.CPUMax); err != nil {
			errs = append(errs, fmt.Errorf("%s.cpu_max: %v", p, err))
		}
	}
	if b.MemoryHigh < 0 || b.MemoryMax < 0 {
		errs = append(errs, fmt.Errorf("%s: memory_high and memory_max must be >= 0 (0 = no limit)", p))
	}
	if b.MemoryHigh > 0 && b.MemoryMax > 0 && b.MemoryHigh > b.MemoryMax {
		errs = append(errs, fmt.Errorf("%s.memory_high %d > memory_max %d: high must not exceed max", p, b.MemoryHigh, b.MemoryMax))
	}
	if b.PidsMax < 0 {
		errs = append(errs, fmt.Errorf("%s.pids_max: must be >= 0 (0 = no limit)", p))
	}
	return errs
}

func checkCPUMax(v string) error {
	f := strings.Fields(v)
	if len(f) != 2 {
		return fmt.Errorf("%q: want \"QUOTA_US PERIOD_US\" or \"max PERIOD_US\", e.g. \"50000 100000\"", v)
	}
	period, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || period < 1000 || period > 1000000 {
		return fmt.Errorf("%q: period must be 1000..1000000 microseconds", v)
	}
	if f[0] != "max" {
		q, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || q < 1000 {
			return fmt.Errorf("%q: quota must be \"max\" or >= 1000 microseconds", v)
		}
	}
	return nil
}

func (p *InteractiveParams) check(f string) []error {
	var errs []error
	if p.Period <= 0 {
		errs = append(errs, fmt.Errorf("%s.period: must be > 0 (e.g. \"20ms\")", f))
	}
	if p.CPULoops < 0 {
		errs = append(errs, fmt.Errorf("%s.cpu_loops: must be >= 0", f))
	}
	if p.TouchBytes < 0 || p.WorkingSetBytes < 0 {
		errs = append(errs, fmt.Errorf("%s: touch_bytes and working_set_bytes must be >= 0", f))
	}
	if p.TouchBytes > 0 && p.WorkingSetBytes == 0 {
		errs = append(errs, fmt.Errorf("%s.working_set_bytes: must be > 0 when touch_bytes is set", f))
	}
	if p.Idle < 0 {
		errs = append(errs, fmt.Errorf("%s.idle: must be >= 0 (0 = requests start at once)", f))
	}
	if p.AllocProbeBytes < 0 || (p.AllocProbeBytes > 0 && p.AllocProbeBytes < 4096) {
		errs = append(errs, fmt.Errorf("%s.alloc_probe_bytes: want 0 (no probe) or >= 4096 (at least a page)", f))
	}
	return append(errs, finite(f, size{"touch_bytes", p.TouchBytes}, size{"working_set_bytes", p.WorkingSetBytes}, size{"alloc_probe_bytes", p.AllocProbeBytes})...)
}

func (p *ToolBurstParams) check(f string) []error {
	var errs []error
	if p.Children < 1 || p.Children > 1024 {
		errs = append(errs, fmt.Errorf("%s.children: %d, want 1..1024", f, p.Children))
	}
	if p.Parallel < 1 {
		errs = append(errs, fmt.Errorf("%s.parallel: %d, want >= 1", f, p.Parallel))
	}
	if p.CPULoops < 0 || p.AllocBytes < 0 || p.Period < 0 {
		errs = append(errs, fmt.Errorf("%s: cpu_loops, alloc_bytes and period must be >= 0", f))
	}
	return append(errs, finite(f, size{"alloc_bytes", p.AllocBytes})...)
}

// size is a byte count of a spec field, for finite.
type size struct {
	field string
	v     Bytes
}

// finite refuses "max" in a workload's sizes: they are amounts it
// allocates or touches, where no limit means nothing.
func finite(p string, sizes ...size) []error {
	var errs []error
	for _, s := range sizes {
		if s.v == units.Max {
			errs = append(errs, fmt.Errorf(`%s.%s: "max" is not a size here; write e.g. "64M"`, p, s.field))
		}
	}
	return errs
}
