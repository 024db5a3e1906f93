package daemon

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/btf"

	"github.com/agentcgroup/agentcgroup/bpf/memcgops"
	"github.com/agentcgroup/agentcgroup/bpf/mempressure"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/config"
	"github.com/agentcgroup/agentcgroup/daemon/eventlog"
)

// Memory modes, as reported in status, metrics and the event log.
//
// mainline: memory.high/max from the profile, burst credit by raising
// memory.high for burst_duration, the fentry probe writes step_pressure,
// protection by memory.low (protect.go).
//
// full: memcg_agent_ops (bpf/memcgops) is attached on the kernel's
// memcg_bpf_ops and reads each step's delay curve, burst credit and
// protection budget from step_policy. The probe still writes
// step_pressure, as in mainline: it times the whole handler (reclaim plus
// the sleep memcg_agent_ops asked for), while memcg_agent_ops is asked only
// when reclaim has left a step over memory.high, so its own record misses
// most of a thrashing step's reclaim. memcg_agent_ops keeps the delays it
// asked for in a private pressure map, which escalation reads beside the
// measured score (the larger wins); without the probe it writes
// step_pressure itself, so the scheduler still sees what it asked for.
// memory.high/max are written as in mainline; the daemon does not raise
// memory.high for burst credit, since the policy already lets a step within
// its credit run unthrottled.
const (
	ModeMainline = config.MemoryMainline
	ModeFull     = config.MemoryFull
)

// chooseMemoryMode resolves "auto" against the running kernel, whose BTF
// kt holds. It returns the mode and why it was chosen.
func chooseMemoryMode(want string, kt *btf.Cache) (mode, why string, err error) {
	switch want {
	case config.MemoryMainline:
		return ModeMainline, "memory_mode = \"mainline\"", nil
	case config.MemoryFull:
		if err := memcgOpsSupported(kt); err != nil {
			return "", "", fmt.Errorf("memory_mode = \"full\" needs a kernel with memcg_bpf_ops (the patched guest kernel): %w; use \"auto\" or \"mainline\" on this kernel", err)
		}
		return ModeFull, "memory_mode = \"full\"", nil
	case config.MemoryAuto, "":
		err := memcgOpsSupported(kt)
		if err == nil {
			return ModeFull, "auto: the kernel has memcg_bpf_ops", nil
		}
		if errors.Is(err, memcgops.ErrNotSupported) {
			return ModeMainline, "auto: the kernel has no memcg_bpf_ops", nil
		}
		return ModeMainline, "auto: " + err.Error(), nil
	}
	return "", "", fmt.Errorf("memory mode %q is not one of auto, mainline, full", want)
}

// memcgOpsSupported is memcgops.Supported on BTF the daemon parsed once
// for all its checks: each parse of the kernel's BTF costs hundreds of
// milliseconds of CPU under emulation.
func memcgOpsSupported(kt *btf.Cache) error {
	spec, err := kt.Kernel()
	if err != nil {
		return fmt.Errorf("memcgops: read kernel BTF (/sys/kernel/btf/vmlinux; needs CONFIG_DEBUG_INFO_BTF): %w", err)
	}
	var st *btf.Struct
	if err := spec.TypeByName("memcg_bpf_ops", &st); err != nil {
		return fmt.Errorf("memcgops: %w", memcgops.ErrNotSupported)
	}
	return nil
}

// setupMemcgOps loads memcg_agent_ops on the pinned maps and attaches it.
func (d *Daemon) setupMemcgOps(kt *btf.Cache) error {
	opts := memcgops.Options{StepPolicy: d.policyMap, Cache: kt}
	if d.probe == nil {
		opts.StepPressure = d.pressureMap
	}
	ops, err := memcgops.Load(opts)
	if err != nil {
		return fmt.Errorf("memory mode full: %w (set daemon.memory_mode = \"mainline\" to run without it)", err)
	}
	if err := ops.Attach(); err != nil {
		ops.Close()
		return fmt.Errorf("memory mode full: %w (is another agentcgroupd or memcg_bpf_ops user running? set daemon.memory_mode = \"mainline\" to run without it)", err)
	}
	d.ops = ops
	d.log.Emit(eventlog.Event{Kind: "memory_mode", MemoryMode: ModeFull, Detail: "memcg_agent_ops attached"})
	return nil
}

// closeMemcgOps detaches memcg_agent_ops: the kernel's stock memory.high
// penalty and static protection apply again.
func (d *Daemon) closeMemcgOps() {
	if d.ops == nil || !d.ops.Attached() {
		if d.ops != nil {
			d.ops.Close()
		}
		return
	}
	e := eventlog.Event{Kind: "memory_mode", MemoryMode: ModeFull, Detail: "memcg_agent_ops detached"}
	if err := d.ops.Close(); err != nil {
		e.Error = err.Error()
	}
	// d.ops stays set: a late metrics scrape gets a read error, not a nil.
	d.log.Emit(e)
}

// MemoryMode is the mode the running daemon chose ("" before Run set up BPF).
func (d *Daemon) MemoryMode() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.memMode
}

// fullMode reports whether memcg_agent_ops is the memory policy. memMode
// is set before any step or server goroutine starts and never changes.
func (d *Daemon) fullMode() bool { return d.memMode == ModeFull }

// sleepingOffDelay reports whether a task of the step may still be in the
// delay memcg_agent_ops last asked for: its pressure entry is not updated
// during that sleep, so it looks stale while the step is still throttled.
func (d *Daemon) sleepingOffDelay(cgid uint64, lastUpdateNs, now uint64) bool {
	if d.ops == nil {
		return false
	}
	st, ok, err := d.ops.Cgroup(cgid)
	if err != nil || !ok || st.LastDelayMs == 0 {
		return false
	}
	return now < lastUpdateNs+uint64(st.LastDelayMs)*1e6
}

// opsStats reads memcg_agent_ops' counters; nil outside full mode.
func (d *Daemon) opsStats() *api.MemcgOpsStats {
	if d.ops == nil {
		return nil
	}
	s, err := d.ops.Stats()
	if err != nil {
		return nil
	}
	return &api.MemcgOpsStats{DelayCalls: s.DelayCalls, DelayPolicy: s.DelayPolicy, DelayNonzero: s.DelayNonzero,
		DelayCredit: s.DelayCredit, DelayMsSum: s.DelayMsSum, LowGrants: s.LowGrants, MinGrants: s.MinGrants,
		Revoked: s.RevokedBudget + s.RevokedMax + s.RevokedOom}
}

// requestedScore is the thrash score of the delays memcg_agent_ops asked
// for, from its private pressure map (full mode with the probe loaded). A
// task sleeping off a long requested delay leaves the entry stale while
// the step is still throttled: the last score holds until the sleep ends.
func (d *Daemon) requestedScore(cgid, now uint64) (uint32, bool) {
	if d.ops == nil || d.probe == nil {
		return 0, false
	}
	sp, ok, err := d.ops.Pressure(cgid)
	if err != nil || !ok {
		return 0, false
	}
	score := mempressure.Score(mempressure.StepPressure{LastUpdateNs: sp.LastUpdateNs, ThrashScore: sp.ThrashScore}, now)
	if d.sleepingOffDelay(cgid, sp.LastUpdateNs, now) {
		score = max(sp.ThrashScore, 1)
	}
	return score, true
}
