package daemon

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/agentcgroup/agentcgroup/bpf/mempressure"
	"github.com/agentcgroup/agentcgroup/daemon/eventlog"
)

// setupBPF opens (or creates) the pinned shared maps, then loads the probe
// and, when asked, the scheduler on them. Pinned maps outlive the daemon, so
// a restart finds the policy and pressure of live steps where it left them.
func (d *Daemon) setupBPF() error {
	cfg := d.cfg.Daemon
	policySpec, pressureSpec, err := mempressure.MapSpecs()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.PinDir, 0o755); err != nil {
		return fmt.Errorf("create pin directory %s (daemon.pin_dir; is bpffs mounted at /sys/fs/bpf?): %w", cfg.PinDir, err)
	}
	open := func(spec *ebpf.MapSpec) (*ebpf.Map, error) {
		spec.Pinning = ebpf.PinByName
		m, err := ebpf.NewMapWithOptions(spec, ebpf.MapOptions{PinPath: cfg.PinDir})
		if err != nil {
			return nil, fmt.Errorf("open pinned map %s/%s: %w (an incompatible map from an older version must be removed by hand)", cfg.PinDir, spec.Name, err)
		}
		return m, nil
	}
	if d.policyMap, err = open(policySpec); err != nil {
		return err
	}
	if d.pressureMap, err = open(pressureSpec); err != nil {
		return err
	}
	want := cfg.MemoryMode
	if d.opts.MemoryMode != "" {
		want = d.opts.MemoryMode
	}
	// One parse of the kernel's BTF serves the memory-mode check, the
	// probe's attach point and loading memcg_agent_ops and the probe;
	// dropped after set-up, as nothing later needs it.
	kt := btf.NewCache()
	mode, why, err := chooseMemoryMode(want, kt)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.memMode, d.memModeWhy = mode, why
	d.mu.Unlock()
	// The probe writes step_pressure in both modes: it times the kernel's
	// whole memory.high handler, reclaim and any sleep included, so a score
	// means the same on either kernel. memcg_agent_ops is only asked while
	// reclaim has left a step over memory.high, which with swap is rare
	// even for a step thrashing in reclaim; as the shared map's writer it
	// left the scheduler's thrash penalty blind in full mode.
	switch cfg.Probe {
	case "off":
		d.probeStatus = "off (daemon.probe)"
	default:
		p, err := mempressure.Load(mempressure.Options{StepPolicy: d.policyMap, StepPressure: d.pressureMap, Cache: kt, Symbol: probeSymbol(kt)})
		if err != nil {
			if cfg.Probe == "require" {
				return fmt.Errorf("%w (daemon.probe = \"require\"; set it to \"auto\" to run on memory.events and PSI alone)", err)
			}
			d.probeStatus = "unavailable: " + err.Error()
			d.log.Emit(eventlog.Event{Kind: "probe", Error: err.Error(), Detail: "running on memory.events and PSI only"})
		} else {
			d.probe = p
			d.probeStatus = "attached to " + p.Symbol
			d.log.Emit(eventlog.Event{Kind: "probe", Detail: d.probeStatus})
		}
	}
	if mode == ModeFull {
		if err := d.setupMemcgOps(kt); err != nil {
			return err
		}
	}
	d.schedStatus = "off"
	if cfg.Scheduler {
		if d.opts.Scheduler == nil {
			return errors.New("daemon.scheduler = true but this agentcgroupd was built without the scheduler; set it to false")
		}
		c, err := d.opts.Scheduler(d.policyMap, d.pressureMap)
		if err != nil {
			return fmt.Errorf("start the sched_ext scheduler: %w (set daemon.scheduler = false to run without it)", err)
		}
		d.sched = c
		d.schedStatus = "running"
		d.log.Emit(eventlog.Event{Kind: "scheduler", Detail: "attached"})
	}
	return nil
}

// probeSymbol is the probe's attach point from the kernel's BTF, or ""
// to let mempressure.Load look for it and explain its absence.
func probeSymbol(kt *btf.Cache) string {
	spec, err := kt.Kernel()
	if err != nil {
		return ""
	}
	for _, name := range mempressure.AttachCandidates {
		var fn *btf.Func
		if spec.TypeByName(name, &fn) == nil {
			return name
		}
	}
	return ""
}

func (d *Daemon) closeBPF() {
	if d.sched != nil {
		d.sched.Close()
	}
	if d.probe != nil {
		d.probe.Close()
	}
	d.closeMemcgOps()
	if d.policyMap != nil {
		d.policyMap.Close()
	}
	if d.pressureMap != nil {
		d.pressureMap.Close()
	}
}

// pressure returns the step's pressure entry and its onset, if any.
func (d *Daemon) pressure(cgid uint64) (mempressure.StepPressure, uint64, bool) {
	sp, ok, err := mempressure.Lookup(d.pressureMap, cgid)
	if err != nil || !ok {
		return sp, 0, false
	}
	var onset uint64
	if d.probe != nil {
		onset, _, _ = d.probe.Onset(cgid)
	}
	return sp, onset, true
}
