// Package memcgops loads memcg_agent_ops, the AgentCgroup memory policy, as
// a memcg_bpf_ops struct_ops into a kernel carrying our patch series
// (vmimages/patches): it sets the memory.high throttle delay per step from
// step_policy, extends memory.low protection for interactive steps within a
// budget, and writes step_pressure for the scheduler.
//
// A mainline kernel has no memcg_bpf_ops; Supported reports that with
// ErrNotSupported so callers fall back to the mainline path (the
// bpf/mempressure probe and plain memory.high).
package memcgops

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// ErrNotSupported means the running kernel has no memcg_bpf_ops.
var ErrNotSupported = errors.New("kernel has no memcg_bpf_ops (a mainline kernel; the patched guest kernel has it)")

// Generated layouts, re-exported under their meaning.
type (
	StepPolicy   = maoStepPolicy
	StepPressure = maoStepPressure
	CgroupState  = maoMaoCgroup
	Stats        = maoMaoStats
)

// Policy flags and classes from agentcgroup.h.
const (
	ClassDefault     = 0
	ClassInteractive = 1
	ClassToolBurst   = 2
	ClassBackground  = 3

	FlagNoThrashPenalty = 1 << 0
	FlagProtectMem      = 1 << 1

	// KernelMaxDelay is the patch's bound on one BPF delay
	// (MEMCG_BPF_MAX_HIGH_DELAY_MS).
	KernelMaxDelay = 2000 * time.Millisecond

	// DefaultProtectBudget is the protection budget of a step whose
	// policy leaves mem_protect_budget_ms at 0 (the object's
	// default_protect_budget_ms); the mainline protector uses it too.
	DefaultProtectBudget = 30 * time.Second
)

// Revocation reasons in CgroupState.Revoked.
const (
	RevokedNone   = 0
	RevokedBudget = 1
	RevokedMax    = 2
	RevokedOOM    = 3
)

// Options configure Load. Zero values keep the defaults compiled into the
// BPF object (listed per field).
type Options struct {
	// StepPolicy and StepPressure replace the program's own maps with
	// shared (usually pinned) instances, so the daemon, the scheduler and
	// this policy see one copy. Nil keeps a private map.
	StepPolicy, StepPressure *ebpf.Map
	// ClassDelayA is A in delay = A*(over/high)^k per class (indexed by
	// Class*), used when a step's policy leaves mem_delay_a_ms at 0.
	// Default {0, 50, 500, 0} ms: background keeps the stock penalty. Set Override to apply it. The delay
	// replaces the kernel's stock penalty; an A of 0 leaves the step to
	// the stock penalty instead.
	ClassDelayA         [4]time.Duration
	OverrideClassDelayA bool
	// DelayK is k when the policy leaves mem_delay_k at 0 (default 2, max 4).
	DelayK uint32
	// ProtectBudget applies when a policy leaves mem_protect_budget_ms at
	// 0 (default DefaultProtectBudget).
	ProtectBudget time.Duration
	// ProtectMin lets below_min protect too. Off by default: reclaim never
	// overrides min protection, so it can push the system into OOM.
	ProtectMin bool
	// Cache, when set, holds the kernel's BTF as the caller already parsed
	// it (btf.NewCache), so Load does not parse it again: each parse costs
	// hundreds of milliseconds of CPU under emulation.
	Cache *btf.Cache
}

// Ops is a loaded policy; it acts only while attached.
type Ops struct {
	objs maoObjects
	link link.Link
}

// Supported checks the running kernel's BTF for struct memcg_bpf_ops.
func Supported() error {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return fmt.Errorf("memcgops: read kernel BTF (/sys/kernel/btf/vmlinux; needs CONFIG_DEBUG_INFO_BTF): %w", err)
	}
	var st *btf.Struct
	if err := spec.TypeByName("memcg_bpf_ops", &st); err != nil {
		return fmt.Errorf("memcgops: %w", ErrNotSupported)
	}
	return nil
}

// MapSpecs returns the shared maps as this program declares them, so a
// caller can create instances every AgentCgroup program accepts.
func MapSpecs() (policy, pressure *ebpf.MapSpec, err error) {
	spec, err := loadMao()
	if err != nil {
		return nil, nil, fmt.Errorf("memcgops: parse embedded BPF object: %w", err)
	}
	return spec.Maps["step_policies"].Copy(), spec.Maps["step_pressures"].Copy(), nil
}

// validate checks options before anything touches the kernel.
func validate(opts Options) error {
	for i, d := range opts.ClassDelayA {
		if d < 0 {
			return fmt.Errorf("memcgops: ClassDelayA[%d] = %v is negative; use 0 for no extra delay", i, d)
		}
	}
	if opts.DelayK > 4 {
		return fmt.Errorf("memcgops: DelayK %d out of range: k must be 1..4 (0 keeps the default 2)", opts.DelayK)
	}
	if opts.ProtectBudget < 0 {
		return fmt.Errorf("memcgops: ProtectBudget %v is negative; use 0 for the default 30s", opts.ProtectBudget)
	}
	return nil
}

// constants maps the options onto the object's tunables.
func constants(opts Options) map[string]any {
	consts := map[string]any{}
	if opts.OverrideClassDelayA {
		var a [4]uint32
		for i, d := range opts.ClassDelayA {
			a[i] = uint32(d / time.Millisecond)
		}
		consts["class_delay_a_ms"] = a
	}
	if opts.DelayK != 0 {
		consts["default_delay_k"] = opts.DelayK
	}
	if opts.ProtectBudget > 0 {
		consts["default_protect_budget_ms"] = uint32(opts.ProtectBudget / time.Millisecond)
	}
	if opts.ProtectMin {
		consts["protect_min"] = uint32(1)
	}
	return consts
}

// Load verifies and loads the policy without attaching it.
func Load(opts Options) (*Ops, error) {
	if err := validate(opts); err != nil {
		return nil, err
	}
	if err := Supported(); err != nil {
		return nil, err
	}
	spec, err := loadMao()
	if err != nil {
		return nil, fmt.Errorf("memcgops: parse embedded BPF object: %w", err)
	}
	for name, v := range constants(opts) {
		vs, ok := spec.Variables[name]
		if !ok {
			return nil, fmt.Errorf("memcgops: BPF object lacks variable %s (stale bindings? run go generate ./bpf/memcgops)", name)
		}
		if err := vs.Set(v); err != nil {
			return nil, fmt.Errorf("memcgops: set %s: %w", name, err)
		}
	}
	repl := map[string]*ebpf.Map{}
	if opts.StepPolicy != nil {
		repl["step_policies"] = opts.StepPolicy
	}
	if opts.StepPressure != nil {
		repl["step_pressures"] = opts.StepPressure
	}
	o := &Ops{}
	if err := spec.LoadAndAssign(&o.objs, &ebpf.CollectionOptions{MapReplacements: repl, Cache: opts.Cache}); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("memcgops: verifier rejected memcg_agent_ops: %+v", ve)
		}
		return nil, fmt.Errorf("memcgops: load: %w", err)
	}
	return o, nil
}

// Attach registers the ops with the kernel. Only one memcg_bpf_ops can be
// attached system wide; a second attach fails with EBUSY.
func (o *Ops) Attach() error {
	if o.link != nil {
		return errors.New("memcgops: already attached")
	}
	l, err := link.AttachStructOps(link.StructOpsOptions{Map: o.objs.MemcgAgentOps})
	if err != nil {
		return fmt.Errorf("memcgops: attach (root needed; another memcg_bpf_ops attached gives EBUSY): %w", err)
	}
	o.link = l
	return nil
}

// Attached reports whether Attach succeeded and Detach has not run.
func (o *Ops) Attached() bool { return o.link != nil }

// Detach unregisters the ops; the kernel waits for running hooks, and the
// stock memory.high penalty and static protection apply again.
func (o *Ops) Detach() error {
	if o.link == nil {
		return nil
	}
	// LINK_DETACH unregisters synchronously (the kernel waits for running
	// hooks); closing the link alone may leave the ops attached until the
	// link is freed later.
	derr := o.link.Detach()
	cerr := o.link.Close()
	o.link = nil
	if derr != nil && !errors.Is(derr, link.ErrNotSupported) {
		return fmt.Errorf("memcgops: detach: %w", derr)
	}
	if cerr != nil {
		return fmt.Errorf("memcgops: detach: %w", cerr)
	}
	return nil
}

// Close detaches and releases the program's own references. Shared maps
// stay alive while pinned or used elsewhere.
func (o *Ops) Close() error {
	return errors.Join(o.Detach(), o.objs.Close())
}

// PolicyMap and PressureMap return the maps in use (shared or private).
func (o *Ops) PolicyMap() *ebpf.Map   { return o.objs.StepPolicies }
func (o *Ops) PressureMap() *ebpf.Map { return o.objs.StepPressures }

// SetPolicy writes a step's policy, keyed by its cgroup id.
func (o *Ops) SetPolicy(cgid uint64, p StepPolicy) error {
	if err := o.objs.StepPolicies.Put(cgid, p); err != nil {
		return fmt.Errorf("memcgops: set policy of cgroup %d: %w", cgid, err)
	}
	return nil
}

// Stats reads the global counters.
func (o *Ops) Stats() (Stats, error) {
	var s Stats
	if err := o.objs.OpsStats.Lookup(uint32(0), &s); err != nil {
		return s, fmt.Errorf("memcgops: read stats: %w", err)
	}
	return s, nil
}

// Cgroup reads the policy's state of one cgroup; ok is false when the
// cgroup is unknown (never online while attached, or offline).
func (o *Ops) Cgroup(cgid uint64) (st CgroupState, ok bool, err error) {
	err = o.objs.CgroupState.Lookup(cgid, &st)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("memcgops: look up cgroup %d: %w", cgid, err)
	}
	return st, true, nil
}

// ResetProtection clears a cgroup's protection accounting (budget used,
// revocation), e.g. when the daemon starts a new interactive phase.
func (o *Ops) ResetProtection(cgid uint64) error {
	err := o.objs.CgroupState.Delete(cgid)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("memcgops: reset cgroup %d: %w", cgid, err)
	}
	return nil
}

// Pressure reads a step's pressure entry; ok is false when none exists.
func (o *Ops) Pressure(cgid uint64) (sp StepPressure, ok bool, err error) {
	err = o.objs.StepPressures.Lookup(cgid, &sp)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return sp, false, nil
	}
	if err != nil {
		return sp, false, fmt.Errorf("memcgops: look up pressure of cgroup %d: %w", cgid, err)
	}
	return sp, true, nil
}
