package daemon

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/eventlog"
)

// The node guard kills the largest killable step when the node's
// MemAvailable falls to daemon.node_available_floor.
//
// The kernel has an OOM killer, but it acts only once reclaim has failed,
// and until then every task that allocates waits in direct reclaim, a
// protected interactive step's included: protection decides whose pages
// reclaim takes, not who waits for it. On an overcommitted node, whose
// steps' limits add up to more than it has, no cgroup limit is reached
// first and nothing else stops the node from getting there. The guard
// kills before that, choosing by the same rule as escalation: only a step
// escalation may kill (not exempt, max_freezes set), the largest by
// memory.current, one at a time, each kill waiting for the step's tasks
// to exit and free their memory before the next look.
//
// A look is one pread of /proc/meminfo, held open. The next comes after
// half the time the fastest fall of MemAvailable seen (halved at each
// look, so an old burst fades) would take to reach the floor, at least a
// daemon tick and at most nodeGuardIdleLook apart: looks come closer as
// the node nears its floor and are rare while it holds still. Without a
// killable step there are no looks at all.
type nodeGuard struct {
	d    *Daemon
	loop *lazyLoop

	mu      sync.Mutex
	meminfo *knob
	last    uint64        // MemAvailable at the last look
	lastAt  time.Duration // ... and when; 0: no look to measure a fall against
	fall    float64       // fastest fall seen, bytes per second
	fresh   bool          // the last look had no earlier one to measure a fall against
	dry     bool          // monitor-only: this episode's kill was logged
	stats   api.NodeGuardStats
}

// nodeGuardIdleLook bounds the time between looks. Agent steps have been
// measured filling memory at up to 50 MiB/s each, so four of them take
// 200 MiB from the node in one such interval: the look that sees the
// fall paces the next ones by it.
const nodeGuardIdleLook = time.Second

func newNodeGuard(d *Daemon) *nodeGuard {
	g := &nodeGuard{d: d}
	g.loop = newLazyLoop(d, g.look, g.close)
	return g
}

// kick asks for a look now (nil-safe, as the protector's).
func (g *nodeGuard) kick() {
	if g != nil {
		g.loop.kick()
	}
}

func (g *nodeGuard) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.meminfo.close()
	g.meminfo = nil
}

// available is MemAvailable from /proc/meminfo, in bytes.
func (g *nodeGuard) available() (uint64, error) {
	if g.meminfo == nil {
		g.meminfo = openKnob("/proc/meminfo")
	}
	b, err := g.meminfo.read()
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("MemAvailable:")); ok {
			v = bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))
			if n, ok := parseUint(bytes.TrimSpace(v)); ok {
				return n << 10, nil
			}
		}
	}
	return 0, fmt.Errorf("/proc/meminfo has no MemAvailable line")
}

// look reads MemAvailable and kills one step if it is at the floor. It
// returns when to look next and whether there is a step to guard.
func (g *nodeGuard) look() (time.Duration, bool) {
	d := g.d
	cfg := d.Config()
	floor, tick := uint64(cfg.Daemon.NodeAvailableFloor), cfg.Daemon.Tick.D()
	mon := cfg.Daemon.MonitorOnly
	var cands []*step
	if floor > 0 {
		for _, s := range d.stepList() {
			s.mu.Lock()
			if s.m.Killable() {
				cands = append(cands, s)
			}
			s.mu.Unlock()
		}
	}
	if len(cands) == 0 {
		g.reset(floor)
		return 0, false
	}
	avail, low, err := g.observe(floor)
	switch {
	case err != nil:
		return nodeGuardIdleLook, true
	case !low:
		return g.pace(avail, floor, tick), true
	}
	var victim *step
	var size uint64
	for _, s := range cands {
		if cur, err := s.cg.ReadUint("memory.current"); err == nil && (victim == nil || cur > size) {
			victim, size = s, cur
		}
	}
	why := fmt.Sprintf("MemAvailable %d MiB <= node_available_floor %d MiB; the largest killable step (memory.current %d MiB)",
		avail>>20, floor>>20, size>>20)
	// Killed without the guard's lock: the kill waits for the step to
	// empty and saves the daemon's state under its lock, which a status
	// request holds while it reads the guard's counters.
	if victim != nil && victim.nodeKill(why, mon) {
		g.mu.Lock()
		g.stats.Kills++
		g.dry = mon
		// The kill freed memory (or, monitor-only, would have): the
		// fall before it says nothing about the node after it.
		g.lastAt, g.fall = 0, 0
		g.mu.Unlock()
	}
	return tick, true
}

// reset forgets the fall measured so far: nothing is guarded.
func (g *nodeGuard) reset(floor uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stats.FloorBytes = floor
	g.lastAt, g.fall, g.dry = 0, 0, false
}

// observe reads MemAvailable and updates the counters and the fall rate.
// It reports whether the guard should kill now: at or below the floor,
// and not after a monitor-only kill of this episode (nothing was freed,
// so every look would log the kill of one more step).
func (g *nodeGuard) observe(floor uint64) (uint64, bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stats.FloorBytes = floor
	avail, err := g.available()
	now := mono()
	if err != nil {
		g.stats.Errors++
		return 0, false, err
	}
	g.stats.Looks++
	g.stats.AvailableBytes = avail
	if g.stats.MinAvailableBytes == 0 || avail < g.stats.MinAvailableBytes {
		g.stats.MinAvailableBytes = avail
	}
	g.fall /= 2
	g.fresh = g.lastAt == 0
	if !g.fresh && g.last > avail && now > g.lastAt {
		g.fall = max(g.fall, float64(g.last-avail)/(now-g.lastAt).Seconds())
	}
	g.last, g.lastAt = avail, now
	if avail > floor {
		g.dry = false
		return avail, false, nil
	}
	return avail, !g.dry, nil
}

// pace is the time to the next look: half the time the fastest fall seen
// would take to bring MemAvailable down to the floor, within [tick,
// nodeGuardIdleLook]. A look without an earlier one to measure against
// (the first, or the first after a kill, whose freed memory makes the
// fall before it meaningless) is followed one tick later, so the fall is
// known at once: after a kill the other steps that filled the node are
// still growing, and an idle-paced look found them at the floor already.
func (g *nodeGuard) pace(avail, floor uint64, tick time.Duration) time.Duration {
	g.mu.Lock()
	fall, fresh := g.fall, g.fresh
	g.mu.Unlock()
	next := nodeGuardIdleLook
	if avail <= floor || fresh {
		next = tick // monitor-only after this episode's logged kill, or no fall known yet
	} else if fall > 0 {
		next = min(next, time.Duration(float64(avail-floor)/fall/2*float64(time.Second)))
	}
	return max(next, tick)
}

// Stats returns the guard's counters (nil while it is off).
func (g *nodeGuard) Stats() *api.NodeGuardStats {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stats.FloorBytes == 0 {
		return nil
	}
	st := g.stats
	return &st
}

// nodeKill ends the step for the node guard if it may still be killed,
// logging the transition as escalation does, and reports whether it did.
// In monitor-only mode the kill is logged as a dry run and not done.
func (s *step) nodeKill(why string, mon bool) bool {
	d := s.d
	now := mono()
	s.mu.Lock()
	tr := s.m.NodeKill(now, why)
	s.mu.Unlock()
	if tr == nil {
		return false
	}
	e := eventlog.Event{Kind: "transition", Session: s.sid, Step: s.tid, CgroupID: s.id,
		From: tr.From.String(), To: tr.To.String(), Action: string(tr.Action), Cause: tr.Cause, KillCause: string(tr.Kill),
		DryRun: mon, MonoNS: uint64(now), Detail: "node guard"}
	d.metrics.transitions.WithLabelValues(tr.From.String(), tr.To.String()).Inc()
	if !mon {
		if err := s.act(tr.Action); err != nil {
			e.Error = err.Error()
		}
	}
	d.log.Emit(e)
	d.saveState()
	s.kick("node guard kill") // its controller finds the cgroup empty
	return true
}
