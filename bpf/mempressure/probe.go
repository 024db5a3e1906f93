// Package mempressure loads the in-kernel memory.high pressure probe: BPF
// programs on entry and exit of the kernel function that throttles a task
// over memory.high, which keep the shared step_pressure map (layout in
// bpf/include/agentcgroup.h) up to date per step cgroup id.
//
// Attach point: __mem_cgroup_handle_over_high (mm/memcontrol.c, Linux 7.x;
// the inline mem_cgroup_handle_over_high wrapper calls it on return to user
// space, and try_charge_memcg calls it directly). Kernels before the rename
// expose mem_cgroup_handle_over_high itself, which is tried second. If
// neither is in the kernel's BTF, or fentry cannot attach (a kernel without
// CONFIG_FUNCTION_TRACER returns EBUSY/ENOTSUPP), Load fails with an error
// wrapping ErrNoAttachPoint; the daemon then runs on user-space signals only
// (memory.events and PSI) and the scheduler sees no pressure entries.
package mempressure

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// AttachCandidates are the kernel functions tried in order.
var AttachCandidates = []string{"__mem_cgroup_handle_over_high", "mem_cgroup_handle_over_high"}

// ErrNoAttachPoint means the running kernel offers no usable throttle hook.
var ErrNoAttachPoint = errors.New("no memory.high throttle function to attach to")

// StepPolicy and StepPressure mirror struct step_policy / step_pressure.
type (
	StepPolicy   = probeStepPolicy
	StepPressure = probeStepPressure
)

// Constants from agentcgroup.h.
const (
	MaxSteps   = 4096
	StaleAfter = 500 * time.Millisecond
	ScoreMax   = 1000
)

// Options configure Load.
type Options struct {
	// StepPolicy and StepPressure replace the probe's own maps with shared
	// (usually pinned) instances. Nil keeps a private map.
	StepPolicy, StepPressure *ebpf.Map
	// TrackAll records pressure for every cgroup, not only those with a
	// step_policy entry.
	TrackAll bool
	// Symbol forces an attach point instead of trying AttachCandidates.
	Symbol string
}

// Probe is a loaded, attached probe.
type Probe struct {
	objs    probeObjects
	links   []link.Link
	mu      sync.Mutex // guards readers
	readers []*ringbuf.Reader
	Symbol  string // the kernel function attached to
}

// MapSpecs returns the specs of the shared maps as the probe declares them,
// so the daemon can create (and pin) instances every program accepts.
func MapSpecs() (policy, pressure *ebpf.MapSpec, err error) {
	spec, err := loadProbe()
	if err != nil {
		return nil, nil, fmt.Errorf("mempressure: parse embedded BPF object: %w", err)
	}
	return spec.Maps["step_policy"].Copy(), spec.Maps["step_pressure"].Copy(), nil
}

// FindSymbol returns the first of AttachCandidates present in the kernel's BTF.
func FindSymbol() (string, error) {
	kspec, err := btf.LoadKernelSpec()
	if err != nil {
		return "", fmt.Errorf("mempressure: read kernel BTF (/sys/kernel/btf/vmlinux; needs CONFIG_DEBUG_INFO_BTF): %w", err)
	}
	for _, name := range AttachCandidates {
		var fn *btf.Func
		if err := kspec.TypeByName(name, &fn); err == nil {
			return name, nil
		}
	}
	return "", fmt.Errorf("mempressure: none of %v is in the kernel's BTF (inlined or renamed in this kernel): %w", AttachCandidates, ErrNoAttachPoint)
}

// Load loads the probe and attaches it at entry and exit of the throttle function.
func Load(opts Options) (*Probe, error) {
	sym := opts.Symbol
	if sym == "" {
		var err error
		if sym, err = FindSymbol(); err != nil {
			return nil, err
		}
	}
	spec, err := loadProbe()
	if err != nil {
		return nil, fmt.Errorf("mempressure: parse embedded BPF object: %w", err)
	}
	for _, p := range spec.Programs {
		p.AttachTo = sym
	}
	if opts.TrackAll {
		if err := spec.Variables["track_all"].Set(uint32(1)); err != nil {
			return nil, fmt.Errorf("mempressure: set track_all: %w", err)
		}
	}
	repl := map[string]*ebpf.Map{}
	if opts.StepPolicy != nil {
		repl["step_policy"] = opts.StepPolicy
	}
	if opts.StepPressure != nil {
		repl["step_pressure"] = opts.StepPressure
	}
	pr := &Probe{Symbol: sym}
	if err := spec.LoadAndAssign(&pr.objs, &ebpf.CollectionOptions{MapReplacements: repl}); err != nil {
		return nil, fmt.Errorf("mempressure: load probe for %s: %w", sym, err)
	}
	for _, prog := range []*ebpf.Program{pr.objs.AgcOverHighEnter, pr.objs.AgcOverHighExit} {
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			pr.Close()
			if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, syscall.Errno(524)) {
				return nil, fmt.Errorf("mempressure: attach to %s: %w (the kernel needs CONFIG_FUNCTION_TRACER with dynamic ftrace for fentry): %w", sym, err, ErrNoAttachPoint)
			}
			return nil, fmt.Errorf("mempressure: attach to %s: %w", sym, err)
		}
		pr.links = append(pr.links, l)
	}
	return pr, nil
}

// Close detaches the programs and releases the probe's own references.
// Shared maps stay alive while pinned or referenced elsewhere.
func (p *Probe) Close() error {
	var errs []error
	p.mu.Lock()
	for _, r := range p.readers {
		errs = append(errs, r.Close())
	}
	p.readers = nil
	p.mu.Unlock()
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	errs = append(errs, p.objs.Close())
	return errors.Join(errs...)
}

// PressureMap and PolicyMap return the maps the probe uses.
func (p *Probe) PressureMap() *ebpf.Map { return p.objs.StepPressure }
func (p *Probe) PolicyMap() *ebpf.Map   { return p.objs.StepPolicy }

// OnsetMap maps a cgroup id to the bpf_ktime_get_ns() of the first throttle
// event of its current pressure episode (first event after StaleAfter quiet).
func (p *Probe) OnsetMap() *ebpf.Map { return p.objs.PressureOnset }

// Onset reads the episode start of a cgroup id; ok is false when none was seen.
func (p *Probe) Onset(cgid uint64) (ns uint64, ok bool, err error) {
	err = p.objs.PressureOnset.Lookup(cgid, &ns)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("mempressure: look up onset of cgroup %d: %w", cgid, err)
	}
	return ns, true, nil
}

// InFlight is how many of the cgroup's tasks are inside the throttle handler
// (reclaiming or sleeping off a penalty) right now.
func (p *Probe) InFlight(cgid uint64) uint64 {
	var n uint64
	if err := p.objs.ThrottleInflight.Lookup(cgid, &n); err != nil {
		return 0
	}
	return n
}

// Onset is one pressure-episode start reported through the ring buffer.
type Onset struct {
	CgroupID uint64
	MonoNS   uint64 // bpf_ktime_get_ns() of the first throttle
}

// WatchOnsets calls fn for every pressure onset the probe reports, in
// order, until the probe is closed. It returns nil after Close.
func (p *Probe) WatchOnsets(fn func(Onset)) error {
	rd, err := ringbuf.NewReader(p.objs.OnsetEvents)
	if err != nil {
		return fmt.Errorf("mempressure: open onset ring buffer: %w", err)
	}
	p.mu.Lock()
	p.readers = append(p.readers, rd)
	p.mu.Unlock()
	for {
		rec, err := rd.Read()
		if errors.Is(err, os.ErrClosed) || errors.Is(err, ringbuf.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("mempressure: read onset ring buffer: %w", err)
		}
		if len(rec.RawSample) < 16 {
			continue
		}
		fn(Onset{CgroupID: binary.NativeEndian.Uint64(rec.RawSample[0:8]), MonoNS: binary.NativeEndian.Uint64(rec.RawSample[8:16])})
	}
}

// Forget drops the probe's private per-cgroup entries (onset, in-flight
// count) of a removed cgroup; the shared maps are the caller's to clean.
func (p *Probe) Forget(cgid uint64) {
	_ = p.objs.PressureOnset.Delete(cgid)
	_ = p.objs.ThrottleInflight.Delete(cgid)
}

// Lookup reads the pressure entry of a cgroup id; ok is false when none exists.
func Lookup(m *ebpf.Map, cgid uint64) (sp StepPressure, ok bool, err error) {
	err = m.Lookup(cgid, &sp)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return sp, false, nil
	}
	if err != nil {
		return sp, false, fmt.Errorf("mempressure: look up cgroup %d in %v: %w", cgid, m, err)
	}
	return sp, true, nil
}

// Now returns the clock bpf_ktime_get_ns reads (CLOCK_MONOTONIC), in ns.
func Now() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// Score is the thrash score with the staleness rule of agentcgroup.h
// applied: an entry not updated for StaleAfter counts as 0.
func Score(sp StepPressure, now uint64) uint32 {
	if sp.LastUpdateNs == 0 || now-sp.LastUpdateNs > uint64(StaleAfter) {
		return 0
	}
	return sp.ThrashScore
}
