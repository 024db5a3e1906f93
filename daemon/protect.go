package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/agentcgroup/agentcgroup/bpf/memcgops"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/eventlog"
)

// Mainline memory protection for steps whose profile sets
// memory.protect.
//
// In full mode memcg_agent_ops answers reclaim's below_low question for
// such a step itself. A mainline kernel has memory.low, which differs in
// two ways the protector has to make up for:
//
//   - A cgroup's low protects it only as far as its ancestors' effective
//     low reaches, so the session and the daemon's base need a low too.
//   - With memory_recursiveprot (systemd's default mount option, and the
//     guest's), protection an ancestor has beyond what its protected
//     children hold is handed to its other children in proportion to
//     their usage: a fixed session or base low would protect the very
//     neighbours the step is to be protected from.
//
// So a protected step gets memory.low "max" (all it holds is protected),
// and each ancestor in the daemon's tree gets the sum of its protected
// steps' memory.current, re-read at every look. An ancestor's excess is
// then at most what those steps shed since the last look.
//
// The budget and the revocations are memcg_agent_ops': a look's interval
// (at most protectGapCap) is charged against the step's protect_budget
// when reclaim that could take the step's pages ran during it (global
// reclaim, or an ancestor at its memory.high or memory.max), and the
// protection is withdrawn for good (memory.low 0) once the step's own
// memory.events max or oom, or its session's oom_kill, grows after it
// began, or the budget is spent.
//
// The protector looks every daemon.tick while such reclaim runs and every
// protectIdleLook otherwise, and not at all without a protected step. The
// daemon writes nothing above its base: if the base's parent is not the
// root cgroup, the parent's own low bounds the protection.
type protector struct {
	d    *Daemon
	wake chan struct{}

	mu       sync.Mutex
	on       bool // run goes
	steps    map[*step]*protection
	lows     map[string]uint64 // ancestor path -> memory.low last written
	ancEv    map[string]uint64 // ancestor path -> memory.events high+max at the last look
	scan     uint64            // /proc/vmstat pages scanned by global reclaim
	lastLook time.Duration
	stats    api.ProtectionStats
}

// protection is one protected step's record.
type protection struct {
	maxBase, oomBase, sessOOMBase uint64 // danger signals when it began
	used                          time.Duration
	revoked                       string // "", "budget", "max" or "oom"
}

const (
	// protectGapCap is the most one look charges against a budget: a
	// longer interval is mostly quiet, as memcg_agent_ops charges the gaps
	// between its grants.
	protectGapCap = 100 * time.Millisecond
	// protectIdleLook paces the looks while no reclaim runs: often enough
	// that the ancestors' lows follow a step's growth before reclaim
	// starts, rarely enough to cost nothing measurable.
	protectIdleLook = time.Second
)

// newProtector returns the mainline protector, or nil in full mode, where
// memcg_agent_ops protects. In monitor-only mode it protects nothing.
func newProtector(d *Daemon) *protector {
	if d.fullMode() {
		return nil
	}
	return &protector{d: d, wake: make(chan struct{}, 1), steps: map[*step]*protection{},
		lows: map[string]uint64{}, ancEv: map[string]uint64{}, stats: api.ProtectionStats{Mechanism: "memory.low"}}
}

// kick asks for a look now: a step came or went, or the policy changed.
// Callers may hold the daemon's lock, never a step's.
func (p *protector) kick() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on {
		if p.d.ctx.Err() != nil {
			return // shutting down: the daemon's wait group may be waited on
		}
		p.on = true
		p.d.wg.Add(1)
		go p.run()
		return
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *protector) run() {
	defer p.d.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-p.d.ctx.Done():
			return
		case <-p.wake:
		case <-timer.C:
		}
		next, any := p.look()
		if !any {
			p.mu.Lock()
			// A kick after the look found nothing is for a new step.
			select {
			case <-p.wake:
				p.mu.Unlock()
				next = 0
			default:
				p.on = false
				p.mu.Unlock()
				return
			}
		}
		timer.Stop()
		select {
		case <-timer.C:
		default:
		}
		timer.Reset(next)
	}
}

// globalScan is the pages scanned by global (not cgroup limit) reclaim.
func globalScan() (uint64, error) {
	f, err := os.Open("/proc/vmstat")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	m, err := cgroupfs.ParseFlatKeyed("/proc/vmstat", f)
	if err != nil {
		return 0, err
	}
	return m["pgscan_kswapd"] + m["pgscan_direct"] + m["pgscan_khugepaged"] + m["pgscan_proactive"], nil
}

// look brings every protected step and its ancestors up to date. It
// returns when to look next and whether any step is protected.
func (p *protector) look() (time.Duration, bool) {
	// Daemon-wide reads first: the daemon's lock is taken before the
	// protector's (createStep and Reload kick with it held).
	d := p.d
	steps := d.stepList()
	mon, tick := d.monitorOnly(), d.tick()
	p.mu.Lock()
	defer p.mu.Unlock()
	now := mono()
	gap := min(now-p.lastLook, protectGapCap)
	if p.lastLook == 0 {
		gap = 0
	}
	p.lastLook = now
	scan, err := globalScan()
	globalReclaim := err == nil && p.scan != 0 && scan > p.scan
	if err == nil {
		p.scan = scan
	}
	base := d.tree.Root()
	// Limit reclaim at an ancestor reaches the protected steps below it.
	ancReclaim := map[string]bool{}
	ancestorReclaim := func(cg cgroupfs.Cgroup) bool {
		if r, ok := ancReclaim[cg.Path]; ok {
			return r
		}
		ev, err := cg.FlatKeyed("memory.events")
		if err != nil {
			return false
		}
		v := ev["high"] + ev["max"]
		old, seen := p.ancEv[cg.Path]
		p.ancEv[cg.Path] = v
		ancReclaim[cg.Path] = seen && v > old
		return ancReclaim[cg.Path]
	}
	reclaim := globalReclaim || ancestorReclaim(base)

	live := map[*step]bool{}
	sums := map[string]uint64{} // ancestor path -> protected usage below it
	var events []eventlog.Event
	for _, s := range steps {
		s.mu.Lock()
		want, budget := !mon && s.prof.Memory.Protect, s.prof.Memory.ProtectBudget.D()
		s.mu.Unlock()
		pr := p.steps[s]
		if !want {
			if pr != nil && pr.revoked == "" {
				if err := s.cg.Write("memory.low", "0"); err == nil {
					events = append(events, p.event(s, "unprotected", "", "the step's profile no longer protects it"))
				}
			}
			delete(p.steps, s)
			continue
		}
		if budget <= 0 {
			budget = memcgops.DefaultProtectBudget
		}
		live[s] = true
		sess := cgroupfs.Cgroup{Path: filepath.Dir(s.cg.Path)}
		ev, err := s.cg.FlatKeyed("memory.events")
		if err != nil {
			continue // the step is going; its removal kicks another look
		}
		sev, _ := sess.FlatKeyed("memory.events")
		if pr == nil {
			pr = &protection{maxBase: ev["max"], oomBase: ev["oom"], sessOOMBase: sev["oom_kill"]}
			p.steps[s] = pr
			if err := s.cg.Write("memory.low", "max"); err != nil {
				pr.revoked = "error"
				events = append(events, p.event(s, "protect_failed", "", err.Error()))
				continue
			}
			p.stats.Granted++
			events = append(events, p.event(s, "protected", "", fmt.Sprintf("memory.low=max, budget %v under reclaim", budget)))
		}
		if pr.revoked != "" {
			continue
		}
		cause := ""
		switch {
		case ev["max"] > pr.maxBase:
			cause = "max"
		case ev["oom"] > pr.oomBase || sev["oom_kill"] > pr.sessOOMBase:
			cause = "oom"
		}
		if sessReclaim := ancestorReclaim(sess); cause == "" && (reclaim || sessReclaim) {
			pr.used += gap
			p.stats.ChargedMs += uint64(gap.Milliseconds())
			if pr.used >= budget {
				cause = "budget"
			}
		}
		if cause != "" {
			pr.revoked = cause
			_ = s.cg.Write("memory.low", "0")
			switch cause {
			case "max":
				p.stats.RevokedMax++
			case "oom":
				p.stats.RevokedOOM++
			case "budget":
				p.stats.RevokedBudget++
			}
			events = append(events, p.event(s, "protection_revoked", cause,
				fmt.Sprintf("after %v of protection under reclaim", pr.used.Round(time.Millisecond))))
			continue
		}
		cur, err := s.cg.ReadUint("memory.current")
		if err != nil {
			continue
		}
		sums[sess.Path] += cur
		sums[base.Path] += cur
	}
	for s := range p.steps {
		if !live[s] {
			delete(p.steps, s)
		}
	}
	// Ancestors: the new sums, and 0 where protection has ended.
	for path := range p.lows {
		if _, ok := sums[path]; !ok {
			sums[path] = 0
		}
	}
	for path, v := range sums {
		if old, ok := p.lows[path]; ok && old == v {
			continue
		}
		cg := cgroupfs.Cgroup{Path: path}
		if err := cg.WriteLimit("memory.low", v); err != nil {
			if cg.Exists() {
				events = append(events, eventlog.Event{Kind: "error", Detail: "memory.low of " + path, Error: err.Error()})
			}
			delete(p.lows, path)
			continue
		}
		if v == 0 {
			delete(p.lows, path)
		} else {
			p.lows[path] = v
		}
	}
	p.stats.Protected = 0
	for _, pr := range p.steps {
		if pr.revoked == "" {
			p.stats.Protected++
		}
	}
	p.stats.LowBytes = p.lows[base.Path]
	for path := range p.ancEv {
		if _, ok := ancReclaim[path]; !ok {
			delete(p.ancEv, path) // a session with no protected step left
		}
	}
	for _, r := range ancReclaim {
		reclaim = reclaim || r // a session's limit reclaim paces the looks too
	}
	for _, e := range events {
		d.log.Emit(e)
	}
	if len(p.steps) == 0 {
		return 0, false
	}
	if reclaim {
		return tick, true
	}
	return protectIdleLook, true
}

func (p *protector) event(s *step, kind, cause, detail string) eventlog.Event {
	return eventlog.Event{Kind: kind, Session: s.sid, Step: s.tid, CgroupID: s.id, Cause: cause, Detail: detail}
}

// Stats returns the protector's counters; nil when there is none.
func (p *protector) Stats() *api.ProtectionStats {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.stats
	return &st
}
