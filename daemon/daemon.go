// Package daemon is agentcgroupd: it owns the agent cgroup tree, the shared
// BPF maps and the memory-pressure probe, applies per-step policy, runs the
// escalation state machine of every step and serves the local API and
// Prometheus metrics.
//
// Layout: <cgroup_mount>/<base>/sess_<SID>/step_<TID>, with cpu, memory and
// pids enabled down to the steps. Maps step_policy and step_pressure are
// pinned in daemon.pin_dir; the probe (bpf/mempressure) and, with
// daemon.scheduler, scx_agent_flatcg use those instances.
//
// Memory mode (daemon.memory_mode, or Options.MemoryMode / agentcgroupd
// --memory-mode): "mainline" applies memory.high/max, raises memory.high
// for burst credit, lets the probe write step_pressure and protects steps
// whose profile sets memory.protect with memory.low on them and their
// ancestors (see protect.go); "full" attaches
// memcg_agent_ops (bpf/memcgops) on the pinned maps, which sets each
// throttle delay from the step's profile and writes step_pressure itself
// (see memmode.go); "auto" picks full when the kernel has memcg_bpf_ops.
// The mode is in GET /v1/status (memory_mode), /metrics
// (agentcgroup_memory_mode{mode}) and the config_loaded event. Stopping
// the daemon detaches memcg_agent_ops.
//
// API (JSON over HTTP on daemon.socket; errors are {"error": "..."}):
//
//	POST   /v1/sessions          {"id","labels"}            201; 400 bad id, 409 exists
//	DELETE /v1/sessions/{id}     [?force=1]                 409 while steps live, unless forced
//	POST   /v1/steps             {"session","step","class","argv"} 201 api.Step; 400 bad class
//	                             or id, 404 no session, 409 step exists; nothing is left behind
//	GET    /v1/steps/{sid}/{tid}
//	DELETE /v1/steps/{sid}/{tid} kills what is left and removes the cgroup
//	GET    /v1/status
//	POST   /v1/reload            422 when the new policy is invalid (old one kept)
//
// The caller of POST /v1/steps starts the command inside the returned cgroup
// (cgroupfs.Cgroup.Start, CLONE_INTO_CGROUP). A step whose processes have
// all exited (or were killed) is removed by the daemon too, at once or,
// with daemon.keep_ended, after that long (a step_ended event marks the
// end), so its final counters can still be read.
//
// A step is evaluated when the kernel signals it: inotify on its
// memory.events (while RUNNING) and cgroup.events, the PSI trigger on its
// memory.pressure, or the probe's ring buffer reporting a pressure onset.
// Only while a transition depends on time passing (THROTTLED: freeze_after
// and clear_after; SOFT_PAUSED with thaw_after) is it also evaluated every
// daemon.tick, and once when its burst credit expires; an idle step costs
// no CPU. Inputs to escalate.Machine: the probe's thrash score
// (kept while a task sits in the throttle handler), growth of memory.events
// "high", "max", "oom" and "oom_kill", PSI trigger firings, and the highest
// memory.pressure avg10 among the other steps. Actions: freeze
// (cgroup.freeze, waiting for frozen), thaw, kill (cgroup.kill).
//
// Escalation: a step under pressure is throttled (by the kernel), frozen
// after freeze_after of severe pressure and thawed after thaw_after. Once
// max_freezes freezes are spent it is killed only for one of two causes,
// named in the kill transition's kill_cause and at the start of its cause:
// "max" or "oom" when the step is at its hard limit (memory.events max, oom
// or oom_kill grew since it was last frozen or thawed: the kernel is already
// failing its allocations), or "others_hurt" when the profile sets
// others_psi_some_avg10 and another step's memory.pressure some avg10
// reaches it. Otherwise it is frozen again and keeps cycling; pressure that
// harms only the step itself slows it and never kills it. The full rule is
// in package escalate. In monitor-only mode transitions are logged with
// dry_run and nothing is written to any knob.
//
// Node guard (daemon.node_available_floor, nodeguard.go): when the node's
// MemAvailable falls to the floor, the largest step escalation may kill is
// killed at once, whatever its state, with kill_cause "node_low", before
// the kernel runs out and every allocating task waits for its OOM killer.
//
// Event log (daemon.event_log, JSON lines, see eventlog.Event): mono_ns is
// CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns, so a transition's
// reaction_ns (mono_ns - onset_mono_ns) is the time from the kernel's first
// throttle of the episode to the daemon's decision.
//
// Restart: stopping the daemon leaves steps, cgroups and pinned maps alone;
// the next start adopts every step found under the tree (class and history
// from state_dir/state.json, else from step_policy), keeps frozen steps
// frozen, and removes steps that emptied meanwhile. While no daemon runs the
// probe is detached, so pressure entries go stale (score 0).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agentcgroup/agentcgroup/bpf/memcgops"
	"github.com/agentcgroup/agentcgroup/bpf/mempressure"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/config"
	"github.com/agentcgroup/agentcgroup/daemon/eventlog"
)

// Controllers the daemon enables down its tree.
var Controllers = []string{"cpu", "memory", "pids"}

// SchedulerLoader starts the sched_ext scheduler on the shared maps and
// returns what detaches it. cmd/agentcgroupd sets it when the scheduler
// package is linked in; nil means the config's scheduler=true is refused.
type SchedulerLoader func(policy, pressure *ebpf.Map) (io.Closer, error)

// Options beyond the policy file.
type Options struct {
	ConfigPath string
	// Config, when set, is the policy to start with instead of reading
	// ConfigPath (agentcgroupd's built-in policy when no file exists);
	// Reload still reads ConfigPath, so a file put there later takes over.
	Config *config.Config
	// MemoryMode overrides daemon.memory_mode ("" keeps the file's).
	MemoryMode string
	// CPUPolicy overrides daemon.cpu_policy ("" keeps the file's).
	CPUPolicy string
	Scheduler SchedulerLoader
	LogOutput io.Writer // overrides daemon.event_log (tests)
}

// Daemon is one running agentcgroupd.
type Daemon struct {
	opts Options
	tree cgroupfs.Tree
	log  *eventlog.Log
	logf io.Closer

	mu         sync.Mutex
	cfg        *config.Config
	lastReload string
	sessions   map[string]*session
	steps      map[string]*step // key "sid/tid"

	policyMap, pressureMap *ebpf.Map
	probe                  *mempressure.Probe
	probeStatus            string
	ops                    *memcgops.Ops // memcg_agent_ops, in full memory mode
	protect                *protector    // memory.low protection, in mainline mode
	guard                  *nodeGuard    // kills before the node runs out of memory
	memMode, memModeWhy    string
	sched                  io.Closer
	schedStatus            string
	watch                  *watcher
	ticker                 *ticker

	reg     *prometheus.Registry
	metrics *metrics

	ctx         context.Context
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	ready       chan struct{}
	metricsAddr string
}

// Ready is closed once the API socket (and metrics listener) accept connections.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// MetricsAddr is the address /metrics listens on (after Ready), with the
// real port when the config asked for port 0.
func (d *Daemon) MetricsAddr() string { return d.metricsAddr }

type session struct {
	ID     string            `json:"id"`
	Labels map[string]string `json:"labels,omitempty"`
}

// New reads the policy and prepares a daemon; Run starts it.
func New(opts Options) (*Daemon, error) {
	cfg := opts.Config
	if cfg == nil {
		var err error
		if cfg, err = config.Load(opts.ConfigPath); err != nil {
			return nil, err
		}
	}
	if opts.MemoryMode != "" {
		if err := config.ValidMemoryMode(opts.MemoryMode); err != nil {
			return nil, fmt.Errorf("memory mode: %w", err)
		}
	}
	if err := config.ValidCPUPolicy(opts.CPUPolicy); err != nil {
		return nil, fmt.Errorf("cpu policy: %w", err)
	}
	d := &Daemon{opts: opts, cfg: cfg, sessions: map[string]*session{}, steps: map[string]*step{}, ready: make(chan struct{})}
	d.tree = cgroupfs.Tree{Mount: cfg.Daemon.CgroupMount, Base: cfg.Daemon.Base}
	switch {
	case opts.LogOutput != nil:
		d.log = eventlog.New(opts.LogOutput)
	case cfg.Daemon.EventLog == "" || cfg.Daemon.EventLog == "-":
		d.log = eventlog.New(os.Stderr)
	default:
		if err := os.MkdirAll(filepath.Dir(cfg.Daemon.EventLog), 0o755); err != nil {
			return nil, fmt.Errorf("event log directory: %w", err)
		}
		f, err := os.OpenFile(cfg.Daemon.EventLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open event log %s (daemon.event_log): %w", cfg.Daemon.EventLog, err)
		}
		d.log, d.logf = eventlog.New(f), f
	}
	return d, nil
}

// Config returns the active policy.
func (d *Daemon) Config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Run sets everything up, serves until ctx ends, then detaches without
// touching live steps: a restarted daemon adopts them.
func (d *Daemon) Run(ctx context.Context) error {
	d.ctx, d.cancel = context.WithCancel(ctx)
	defer d.cancel()
	cfg := d.cfg
	root := d.tree.Root()
	if _, err := cgroupfs.Open(cfg.Daemon.CgroupMount); err != nil {
		return err
	}
	if _, err := cgroupfs.Mkdir(root.Path); err != nil {
		return err
	}
	if err := cgroupfs.EnableControllers(cfg.Daemon.CgroupMount, cfg.Daemon.Base, Controllers...); err != nil {
		return err
	}
	// Deferred first so it runs last: closeBPF still logs the detach.
	if d.logf != nil {
		defer d.logf.Close()
	}
	// closeBPF copes with a partial setup, so a failed start detaches
	// whatever it attached.
	defer d.closeBPF()
	if err := d.setupBPF(); err != nil {
		return err
	}
	w, err := newWatcher(d)
	if err != nil {
		return err
	}
	d.watch = w
	d.ticker = newTicker(d)
	d.protect = newProtector(d)
	d.guard = newNodeGuard(d)
	defer w.close()
	d.reg = prometheus.NewRegistry()
	d.metrics = newMetrics(d)
	d.reg.MustRegister(d.metrics)
	if err := d.adopt(); err != nil {
		return err
	}
	if d.probe != nil {
		// The probe reports each pressure onset; wake that step at once.
		go func() {
			if err := d.probe.WatchOnsets(func(o mempressure.Onset) { d.kickByID(o.CgroupID, "probe onset") }); err != nil {
				d.log.Emit(eventlog.Event{Kind: "probe", Error: err.Error()})
			}
		}()
	}
	d.log.Emit(eventlog.Event{Kind: "config_loaded", MemoryMode: d.memMode, Detail: cfg.Path + " memory_mode=" + d.memMode + " (" + d.memModeWhy + ")"})

	if err := os.MkdirAll(filepath.Dir(cfg.Daemon.Socket), 0o755); err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	_ = os.Remove(cfg.Daemon.Socket)
	ln, err := net.Listen("unix", cfg.Daemon.Socket)
	if err != nil {
		return fmt.Errorf("listen on %s (daemon.socket): %w", cfg.Daemon.Socket, err)
	}
	api := &http.Server{Handler: d.apiHandler()}
	errc := make(chan error, 2)
	go func() { errc <- api.Serve(ln) }()
	var msrv *http.Server
	if cfg.Daemon.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.Daemon.MetricsAddr)
		if err != nil {
			api.Close()
			return fmt.Errorf("listen on %s (daemon.metrics_addr): %w", cfg.Daemon.MetricsAddr, err)
		}
		d.metricsAddr = mln.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{}))
		msrv = &http.Server{Handler: mux}
		go func() { errc <- msrv.Serve(mln) }()
	}
	close(d.ready)
	select {
	case <-d.ctx.Done():
	case err = <-errc:
	}
	api.Close()
	if msrv != nil {
		msrv.Close()
	}
	d.cancel()
	d.wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Reload re-reads the policy file. An invalid file is refused and the old
// policy stays in force; settings that need a restart are reported.
func (d *Daemon) Reload() error {
	cfg, err := config.Load(d.opts.ConfigPath)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.lastReload = "rejected: " + err.Error()
		d.log.Emit(eventlog.Event{Kind: "config_rejected", Error: err.Error(), Detail: "keeping the previous policy"})
		d.metrics.reloads.WithLabelValues("rejected").Inc()
		return err
	}
	old := d.cfg.Daemon
	note := ""
	if cfg.Daemon.Socket != old.Socket || cfg.Daemon.Base != old.Base || cfg.Daemon.CgroupMount != old.CgroupMount ||
		cfg.Daemon.PinDir != old.PinDir || cfg.Daemon.MetricsAddr != old.MetricsAddr || cfg.Daemon.Scheduler != old.Scheduler ||
		cfg.Daemon.Probe != old.Probe || cfg.Daemon.EventLog != old.EventLog || cfg.Daemon.MemoryMode != old.MemoryMode {
		note = "daemon.* settings other than monitor_only, tick, keep_ended and node_available_floor take effect on restart"
		keep := cfg.Daemon
		cfg.Daemon = old
		cfg.Daemon.MonitorOnly, cfg.Daemon.Tick, cfg.Daemon.KeepEnded = keep.MonitorOnly, keep.Tick, keep.KeepEnded
		cfg.Daemon.NodeAvailableFloor = keep.NodeAvailableFloor
	}
	d.cfg = cfg
	for _, s := range d.steps {
		s.reprofile(cfg, d.sessions[s.sid])
		// Its next look was timed by the old escalation settings.
		s.kick("policy reloaded")
	}
	d.protect.kick() // protect may have changed in a profile, or monitor_only
	d.guard.kick()   // the floor, or which profiles may be killed
	d.lastReload = "ok"
	d.log.Emit(eventlog.Event{Kind: "config_loaded", Detail: cfg.Path + " " + note})
	d.metrics.reloads.WithLabelValues("ok").Inc()
	return nil
}

func (d *Daemon) monitorOnly() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.Daemon.MonitorOnly
}

// cpuPolicyLocked is where profiles' CPU policy goes (config.CPUCgroup,
// ...); the caller holds d.mu.
func (d *Daemon) cpuPolicyLocked() string {
	p := d.opts.CPUPolicy
	if p == "" {
		p = d.cfg.Daemon.CPUPolicy
	}
	if p == "" {
		if d.cfg.Daemon.Scheduler {
			return config.CPUScheduler
		}
		return config.CPUCgroup
	}
	return p
}

// tick is the grid timed looks fall on.
func (d *Daemon) tick() time.Duration { return d.Config().Daemon.Tick.D() }
