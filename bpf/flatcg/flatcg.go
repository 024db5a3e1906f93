// Package flatcg loads, attaches and reads the scx_agent_flatcg sched_ext
// scheduler: flattened cgroup weights, per-step agent policy, a cpu.max
// equivalent and a thrash-aware CPU penalty (see flatcg.bpf.c).
package flatcg

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

// Generated layouts shared with the BPF side (agentcgroup.h, flatcg.h).
type (
	StepPolicy   = flatcgStepPolicy
	StepPressure = flatcgStepPressure
	Stats        = flatcgFcgStats
)

// The thrash_score scale (enum agc_pressure in agentcgroup.h, generated):
// the scheduler penalizes a step whose fresh score is at or above its
// threshold. See docs/PRESSURE.md for how the default was chosen.
const (
	ScoreMax = uint32(flatcgAgcPressureAGC_PRESSURE_MAX)
	// DefaultThrashThreshold is the penalty threshold of a step whose
	// policy leaves penalty_score at 0.
	DefaultThrashThreshold = uint32(flatcgAgcPressureAGC_PRESSURE_PENALTY)
	// PressureStale: older pressure entries count as score 0.
	PressureStale = time.Duration(flatcgAgcPressureAGC_PRESSURE_STALE_NS)
)

// Step classes and policy flags, as in bpf/include/agentcgroup.h.
const (
	ClassDefault     = 0
	ClassInteractive = 1
	ClassToolBurst   = 2
	ClassBackground  = 3

	PolicyNoThrashPenalty = 1 << 0
)

// Sched_ext constants of the kernel ABI this scheduler uses.
const (
	opsSwitchPartial     = 8  // SCX_OPS_SWITCH_PARTIAL
	opsEnqLast           = 2  // SCX_OPS_ENQ_LAST
	opsAllowQueuedWakeup = 32 // SCX_OPS_ALLOW_QUEUED_WAKEUP
)

// Config tunes the scheduler. The zero value is usable: every zero field
// takes the default noted next to it.
type Config struct {
	// Partial only schedules tasks whose policy is SCHED_EXT (see
	// SetSchedExt); everything else stays on the fair class.
	Partial bool
	// Watchdog is the kernel's stall timeout (default 5s, at most 30s).
	// The timeout counts wall time, so a guest whose vCPUs the host
	// stops counts that against the scheduler too. With MaxLead the
	// longest waits in the agents evaluation (TCG, 2 vCPUs) were
	// 0.3-1.6 s at host load 4-6, but reached 5.0 s at load 8.4, when
	// charges spanning stopped vCPUs dropped 33 s of a trial. 5s is kept
	// as the default for machines whose CPUs are not stolen; a caller on
	// an emulated guest of a loaded host may want more.
	Watchdog time.Duration
	// Slice is the default time slice (default 20ms).
	Slice time.Duration
	// ShortSlice caps the slice of a thrash-penalized cgroup (default 1ms).
	ShortSlice time.Duration
	// Boost bounds how far an interactive wakeup moves its cgroup ahead of
	// the current cgroup vtime (default 5ms).
	Boost time.Duration
	// ThrashThreshold: a fresh thrash_score at or above it triggers the
	// penalty, for steps whose policy has no penalty_score of its own
	// (default DefaultThrashThreshold, range 1..ScoreMax).
	ThrashThreshold uint32
	// ThrashPenaltyQ8 is the weight factor of a penalized cgroup in 1/256
	// (default 64, i.e. 0.25x).
	ThrashPenaltyQ8 uint32
	// WakePreempt: a contended wakeup preempts the CPU whose running
	// cgroup leads the woken task's cgroup by more than this much cgroup
	// vtime (default 1ms; negative disables wakeup preemption).
	WakePreempt time.Duration
	// BandwidthTick is the cpu.max refill timer period (default 5ms).
	BandwidthTick time.Duration
	// MaxLead bounds how far one cgroup's vtime may run ahead of the
	// latest dispatched cgroup's (default 250ms). A cgroup's wait for its
	// next turn is about MaxLead times the other runnable cgroups' summed
	// effective shares over the CPU count, whatever its own share: small
	// shares get proportionally shorter slices, and what a slice overruns
	// is not charged past MaxLead. Range: Slice..Watchdog/2.
	MaxLead time.Duration
	// PolicyMap and PressureMap replace the program's own step_policy and
	// step_pressure maps, e.g. with maps the daemon pinned.
	PolicyMap, PressureMap *ebpf.Map
}

func (c *Config) withDefaults() (Config, error) {
	out := *c
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&out.Watchdog, 5*time.Second)
	def(&out.Slice, 20*time.Millisecond)
	def(&out.ShortSlice, time.Millisecond)
	def(&out.Boost, 5*time.Millisecond)
	def(&out.BandwidthTick, 5*time.Millisecond)
	def(&out.WakePreempt, time.Millisecond)
	def(&out.MaxLead, max(250*time.Millisecond, out.Slice))
	if out.ThrashThreshold == 0 {
		out.ThrashThreshold = DefaultThrashThreshold
	}
	if out.ThrashPenaltyQ8 == 0 {
		out.ThrashPenaltyQ8 = 64
	}
	switch {
	case out.Watchdog < 100*time.Millisecond || out.Watchdog > 30*time.Second:
		return out, fmt.Errorf("flatcg: watchdog %v out of range: use 100ms..30s", out.Watchdog)
	case out.Slice < 100*time.Microsecond || out.Slice > time.Second:
		return out, fmt.Errorf("flatcg: slice %v out of range: use 100us..1s", out.Slice)
	case out.ShortSlice < 100*time.Microsecond || out.ShortSlice > out.Slice:
		return out, fmt.Errorf("flatcg: short slice %v out of range: use 100us..slice (%v)", out.ShortSlice, out.Slice)
	case out.Boost < 0 || out.Boost > time.Second:
		return out, fmt.Errorf("flatcg: boost %v out of range: use 0..1s", out.Boost)
	case out.ThrashThreshold > ScoreMax:
		return out, fmt.Errorf("flatcg: thrash threshold %d out of range: use 1..%d (the thrash_score scale)", out.ThrashThreshold, ScoreMax)
	case out.ThrashPenaltyQ8 > 256:
		return out, fmt.Errorf("flatcg: thrash penalty %d/256 would raise the weight: use 1..256", out.ThrashPenaltyQ8)
	case out.WakePreempt > time.Second:
		return out, fmt.Errorf("flatcg: wake preempt %v out of range: use up to 1s, or negative to disable", out.WakePreempt)
	case out.MaxLead < out.Slice || out.MaxLead > out.Watchdog/2:
		return out, fmt.Errorf("flatcg: max lead %v out of range: use slice (%v)..watchdog/2 (%v)", out.MaxLead, out.Slice, out.Watchdog/2)
	case out.BandwidthTick < time.Millisecond || out.BandwidthTick > 100*time.Millisecond:
		return out, fmt.Errorf("flatcg: bandwidth tick %v out of range: use 1ms..100ms", out.BandwidthTick)
	}
	return out, nil
}

// Scheduler is an attached scx_agent_flatcg instance.
type Scheduler struct {
	objs flatcgObjects
	link link.Link
}

// ExitInfo is what the kernel told the scheduler in ops.exit.
type ExitInfo struct {
	Kind     int32 // enum scx_exit_kind: 64 unreg, 1024 error, 1025 error (BPF), ...
	ExitCode int64
	Reason   string
	Message  string
}

// KindName names the exit kind.
func (e ExitInfo) KindName() string {
	switch e.Kind {
	case 0:
		return "none"
	case 1:
		return "done"
	case 64:
		return "unregistered"
	case 65:
		return "unregistered (BPF)"
	case 66:
		return "unregistered (kernel)"
	case 67:
		return "sysrq"
	case 68:
		return "parent"
	case 1024:
		return "error"
	case 1025:
		return "error (BPF)"
	case 1026:
		return "error (watchdog stall)"
	}
	return fmt.Sprintf("kind %d", e.Kind)
}

func (e ExitInfo) String() string {
	return fmt.Sprintf("%s (%d): %s: %s", e.KindName(), e.Kind, e.Reason, e.Message)
}

// Load loads the scheduler into the kernel and attaches it, replacing the
// fair class for normal tasks (or only SCHED_EXT tasks with cfg.Partial).
func Load(cfg Config) (*Scheduler, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if state, err := State(); err != nil {
		return nil, err
	} else if state != "disabled" {
		return nil, fmt.Errorf("flatcg: sched_ext state is %q: another scheduler is attached; stop it first", state)
	}

	spec, err := loadFlatcg()
	if err != nil {
		return nil, fmt.Errorf("flatcg: parse BPF object: %w", err)
	}
	consts := map[string]any{
		"slice_ns":          uint64(c.Slice),
		"short_slice_ns":    uint64(c.ShortSlice),
		"boost_ns":          uint64(c.Boost),
		"wake_lag_ns":       uint64(c.Slice),
		"max_lead_ns":       uint64(c.MaxLead),
		"starve_ns":         uint64(2 * c.MaxLead),
		"wake_preempt_ns":   uint64(max(c.WakePreempt, 0)),
		"bw_tick_ns":        uint64(c.BandwidthTick),
		"thrash_threshold":  c.ThrashThreshold,
		"thrash_penalty_q8": c.ThrashPenaltyQ8,
	}
	for name, v := range consts {
		vs, ok := spec.Variables[name]
		if !ok {
			return nil, fmt.Errorf("flatcg: BPF object lacks variable %s (stale bindings? run make generate)", name)
		}
		if err := vs.Set(v); err != nil {
			return nil, fmt.Errorf("flatcg: set %s: %w", name, err)
		}
	}
	flags := uint64(opsEnqLast | opsAllowQueuedWakeup)
	if c.Partial {
		flags |= opsSwitchPartial
	}
	if err := patchOps(spec.Maps["agent_flatcg"], map[string]uint64{
		"flags":      flags,
		"timeout_ms": uint64(c.Watchdog / time.Millisecond),
	}); err != nil {
		return nil, err
	}

	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{}}
	if c.PolicyMap != nil {
		opts.MapReplacements["step_policies"] = c.PolicyMap
	}
	if c.PressureMap != nil {
		opts.MapReplacements["step_pressures"] = c.PressureMap
	}

	s := &Scheduler{}
	if err := spec.LoadAndAssign(&s.objs, opts); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("flatcg: verifier rejected the program: %+v", ve)
		}
		return nil, fmt.Errorf("flatcg: load: %w", err)
	}
	s.link, err = link.AttachStructOps(link.StructOpsOptions{Map: s.objs.AgentFlatcg})
	if err != nil {
		s.objs.Close()
		return nil, fmt.Errorf("flatcg: attach (is CONFIG_SCHED_CLASS_EXT on and are you root?): %w", err)
	}
	return s, nil
}

// patchOps writes integer members of the struct_ops value, locating them by
// the BTF of struct sched_ext_ops rather than by fixed offsets.
func patchOps(ms *ebpf.MapSpec, vals map[string]uint64) error {
	if ms == nil || len(ms.Contents) != 1 {
		return errors.New("flatcg: BPF object has no agent_flatcg struct_ops map (stale bindings? run make generate)")
	}
	st, ok := ms.Value.(*btf.Struct)
	if !ok {
		return fmt.Errorf("flatcg: struct_ops value is %T, not a struct", ms.Value)
	}
	data, ok := ms.Contents[0].Value.([]byte)
	if !ok {
		return fmt.Errorf("flatcg: struct_ops contents are %T, not bytes", ms.Contents[0].Value)
	}
	data = bytes.Clone(data)
	for name, v := range vals {
		found := false
		for _, m := range st.Members {
			if m.Name != name {
				continue
			}
			size, err := btf.Sizeof(m.Type)
			if err != nil {
				return fmt.Errorf("flatcg: size of sched_ext_ops.%s: %w", name, err)
			}
			off := int(m.Offset.Bytes())
			if off+size > len(data) {
				return fmt.Errorf("flatcg: sched_ext_ops.%s beyond the value", name)
			}
			switch size {
			case 4:
				binary.NativeEndian.PutUint32(data[off:], uint32(v))
			case 8:
				binary.NativeEndian.PutUint64(data[off:], v)
			default:
				return fmt.Errorf("flatcg: sched_ext_ops.%s has size %d", name, size)
			}
			found = true
		}
		if !found {
			return fmt.Errorf("flatcg: sched_ext_ops has no member %s on this kernel", name)
		}
	}
	ms.Contents[0].Value = data
	return nil
}

// Close detaches the scheduler; the kernel returns tasks to the fair class.
func (s *Scheduler) Close() error {
	var err error
	if s.link != nil {
		err = s.link.Close()
		s.link = nil
	}
	return errors.Join(err, s.objs.Close())
}

// PolicyMap is the step_policy map in use (cgroup id -> StepPolicy).
func (s *Scheduler) PolicyMap() *ebpf.Map { return s.objs.StepPolicies }

// PressureMap is the step_pressure map in use (cgroup id -> StepPressure).
func (s *Scheduler) PressureMap() *ebpf.Map { return s.objs.StepPressures }

// SetPolicy installs the policy of the cgroup with id cgid.
func (s *Scheduler) SetPolicy(cgid uint64, p StepPolicy) error {
	return s.objs.StepPolicies.Put(cgid, p)
}

// SetPressure writes the pressure entry of the cgroup with id cgid. Set
// LastUpdateNs with MonotonicNow: entries older than PressureStale count
// as zero.
func (s *Scheduler) SetPressure(cgid uint64, p StepPressure) error {
	return s.objs.StepPressures.Put(cgid, p)
}

// Exited reports whether the kernel has ended the scheduler, and why.
func (s *Scheduler) Exited() (ExitInfo, bool, error) {
	var raw flatcgFcgExitInfo
	if err := s.objs.ExitInfo.Get(&raw); err != nil {
		return ExitInfo{}, false, fmt.Errorf("flatcg: read exit info: %w", err)
	}
	if raw.Kind == 0 {
		return ExitInfo{}, false, nil
	}
	return ExitInfo{
		Kind:     raw.Kind,
		ExitCode: raw.ExitCode,
		Reason:   cString(raw.Reason[:]),
		Message:  cString(raw.Msg[:]),
	}, true, nil
}

// ExitDump is the kernel's debug dump of the scheduler's state at an error
// exit (runnable tasks per CPU, with this scheduler's view of each task's
// cgroup), empty before an exit or when the kernel made none.
func (s *Scheduler) ExitDump() (string, error) {
	buf := make([]byte, s.objs.ExitDump.Size())
	if err := s.objs.ExitDump.Get(buf); err != nil {
		return "", fmt.Errorf("flatcg: read exit dump: %w", err)
	}
	if i := bytes.IndexByte(buf, 0); i >= 0 {
		buf = buf[:i]
	}
	return string(buf), nil
}

// Wait blocks until the scheduler exits or ctx ends. It sleeps on the ring
// buffer ops.exit writes to after exit_info, so a waiting loader uses no
// CPU; a record written before Wait began is still in the buffer.
func (s *Scheduler) Wait(ctx context.Context) (ExitInfo, error) {
	rd, err := ringbuf.NewReader(s.objs.ExitEvents)
	if err != nil {
		return ExitInfo{}, fmt.Errorf("flatcg: open the exit ring buffer: %w", err)
	}
	closed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { rd.Close(); close(closed) })
	defer func() {
		if stop() {
			rd.Close()
		} else {
			<-closed // Close is under way: the reader is gone when Wait returns
		}
	}()
	for {
		ei, done, err := s.Exited()
		if err != nil || done {
			return ei, err
		}
		if _, err := rd.Read(); err != nil {
			if ctx.Err() != nil {
				return ExitInfo{}, ctx.Err()
			}
			return ExitInfo{}, fmt.Errorf("flatcg: wait on the exit ring buffer: %w", err)
		}
	}
}

// TriggerTestError makes the BPF scheduler call scx_bpf_error on its next
// dispatch or tick. For tests of the fail-safe path only.
func (s *Scheduler) TriggerTestError(code uint32) error {
	if code == 0 {
		return errors.New("flatcg: test error code must be non-zero")
	}
	return s.objs.TestErrorTrigger.Set(code)
}

// CgroupStats is one cgroup's view from the scheduler. Stats carries the
// cumulative counters, among them Boosts, Penalties and PenalizedNs (CPU
// time charged while the thrash penalty applied).
type CgroupStats struct {
	ID        uint64
	Level     uint32
	Weight    uint32
	Throttled bool
	Active    bool
	Stats
}

// Cgroups returns every cgroup the scheduler tracks, keyed by cgroup id.
func (s *Scheduler) Cgroups() (map[uint64]CgroupStats, error) {
	var hwm uint32
	if err := s.objs.SlotHwm.Get(&hwm); err != nil {
		return nil, fmt.Errorf("flatcg: read slot count: %w", err)
	}
	out := make(map[uint64]CgroupStats)
	if hwm == 0 {
		return out, nil
	}
	// One batch lookup for every slot in use rather than a system call per
	// slot; slot by slot where the kernel has no batch operations.
	vals := make([]flatcgFcgCgroup, hwm)
	var cursor ebpf.MapBatchCursor
	n, err := s.objs.Cgroups.BatchLookup(&cursor, make([]uint32, hwm), vals, nil)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		n = int(hwm)
		for slot := uint32(0); slot < hwm; slot++ {
			if err := s.objs.Cgroups.Lookup(slot, &vals[slot]); err != nil {
				return nil, fmt.Errorf("flatcg: read cgroup slot %d: %w", slot, err)
			}
		}
	}
	for _, c := range vals[:n] {
		if c.Cgid == 0 {
			continue
		}
		out[c.Cgid] = CgroupStats{
			ID: c.Cgid, Level: c.Level, Weight: c.Weight,
			Throttled: c.Throttled != 0, Active: c.NrActive > 0, Stats: c.Stats,
		}
	}
	return out, nil
}

// CgroupStatsOf returns the stats of one cgroup by id.
func (s *Scheduler) CgroupStatsOf(cgid uint64) (CgroupStats, error) {
	all, err := s.Cgroups()
	if err != nil {
		return CgroupStats{}, err
	}
	st, ok := all[cgid]
	if !ok {
		return CgroupStats{}, fmt.Errorf("flatcg: cgroup id %d unknown to the scheduler: does it have +cpu in its parent's cgroup.subtree_control?", cgid)
	}
	return st, nil
}

func cString(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

// State reads /sys/kernel/sched_ext/state ("disabled", "enabled", ...).
func State() (string, error) {
	b, err := os.ReadFile("/sys/kernel/sched_ext/state")
	if err != nil {
		return "", fmt.Errorf("flatcg: kernel has no sched_ext (CONFIG_SCHED_CLASS_EXT): %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Counters are scheduler-wide event counts since load.
type Counters struct {
	WakePrev, WakeOther uint64 // wakeups placed on the previous / another CPU
	Direct              uint64 // wakeups run directly on an idle remote CPU
	Dispatched          uint64 // tasks moved from a cgroup DSQ by ops.dispatch
	KeptPrev            uint64 // dispatches that kept the running task
	WakePreempt         uint64 // wakeups that preempted a CPU running a cgroup further ahead
	WakeSync            uint64 // sync wakeups queued behind their waker on its CPU
	// ChargeCapped counts runtime charges longer than a slice, cut to one
	// slice (the CPU itself was stopped, e.g. a host-preempted vCPU);
	// ChargeDroppedNs is the time not charged.
	ChargeCapped, ChargeDroppedNs uint64
	// MaxWaitNs is the longest any task waited from its insertion into a
	// dispatch queue to running, MaxWaitPid and MaxWaitCgroup whose wait
	// it was; LongWaits counts waits of a second or more.
	MaxWaitNs, MaxWaitCgroup, LongWaits uint64
	MaxWaitPid                          uint32
	// AcctUnderflows counts deactivations of a cgroup with no runnable
	// task counted; ExitActive cgroups removed while still counted
	// active. Both should stay 0.
	AcctUnderflows, ExitActive uint64
	// LeadCapped counts charges cut so that their cgroup stays within
	// MaxLead of the latest dispatched cgroup vtime; LeadDroppedNs is the
	// cgroup vtime not added.
	LeadCapped, LeadDroppedNs uint64
	// Aged counts dispatches that took a cgroup's task that had waited
	// over MaxLead ahead of lower task vtimes.
	Aged uint64
	// Starved counts dispatches of a cgroup that had had queued tasks
	// and none run for 2*MaxLead, taken ahead of vtime order.
	Starved uint64
	// PolicyLookups counts step_policy lookups for a task's cgroup (in
	// charge, enqueue and dispatch); PolicyHits those that found an
	// entry. Hits prove the scheduler reads the policy map its writer
	// fills: with a daemon's pinned map and agent steps running, they
	// are non-zero.
	PolicyLookups, PolicyHits uint64
}

// Counters reads the scheduler-wide counters.
func (s *Scheduler) Counters() (Counters, error) {
	var c Counters
	for _, v := range []struct {
		dst any
		src interface{ Get(any) error }
	}{
		{&c.WakePrev, s.objs.NrWakePrev}, {&c.WakeOther, s.objs.NrWakeOther},
		{&c.Direct, s.objs.NrDirect}, {&c.Dispatched, s.objs.NrDispatched},
		{&c.KeptPrev, s.objs.NrKept}, {&c.WakePreempt, s.objs.NrWakePreempt},
		{&c.WakeSync, s.objs.NrWakeSync},
		{&c.ChargeCapped, s.objs.NrChargeCapped}, {&c.ChargeDroppedNs, s.objs.ChargeDroppedNs},
		{&c.MaxWaitNs, s.objs.MaxWaitNs}, {&c.MaxWaitCgroup, s.objs.MaxWaitCgid},
		{&c.LongWaits, s.objs.NrLongWaits}, {&c.MaxWaitPid, s.objs.MaxWaitPid},
		{&c.AcctUnderflows, s.objs.NrAcctUnderflow}, {&c.ExitActive, s.objs.NrExitActive},
		{&c.LeadCapped, s.objs.NrLeadCapped}, {&c.LeadDroppedNs, s.objs.LeadDroppedNs},
		{&c.Aged, s.objs.NrAged}, {&c.Starved, s.objs.NrStarved},
	} {
		if err := v.src.Get(v.dst); err != nil {
			return c, fmt.Errorf("flatcg: read counters: %w", err)
		}
	}
	var per []flatcgFcgPcpuStats
	if err := s.objs.PcpuStats.Lookup(uint32(0), &per); err != nil {
		return c, fmt.Errorf("flatcg: read per-CPU counters: %w", err)
	}
	for _, p := range per {
		c.PolicyLookups += p.PolicyLookups
		c.PolicyHits += p.PolicyHits
	}
	return c, nil
}
