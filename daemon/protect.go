package daemon

import (
	"bytes"
	"fmt"
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
// (at most protectReclaimLook) is charged against the step's protect_budget
// when reclaim that could take the step's pages ran during it (global
// reclaim, or an ancestor at its memory.high or memory.max), and the
// protection is withdrawn for good (memory.low 0) once the step's own
// memory.events max or oom, or its session's oom_kill, grows after it
// began, or the budget is spent.
//
// The protector looks every protectReclaimLook while such reclaim runs or
// a protected step's usage moves by more than lowSlack between looks, and
// every protectIdleLook otherwise, and not at all without a protected
// step. The daemon writes nothing above its base: if the base's parent is
// not the root cgroup, the parent's own low bounds the protection.
type protector struct {
	d    *Daemon
	loop *lazyLoop

	mu       sync.Mutex
	steps    map[*step]*protection
	anc      map[string]*ancestor // session and base paths
	vmstat   *knob
	scan     uint64 // pages scanned by global reclaim, from /proc/vmstat
	lastLook time.Duration
	stats    api.ProtectionStats
}

// protection is one protected step's record.
type protection struct {
	maxBase, oomBase, sessOOMBase uint64 // danger signals when it began
	used                          time.Duration
	revoked                       string // "", "budget", "max" or "oom"
	began                         bool   // memory.low written
	events, current               *knob
}

// ancestor is a session or the base while a protected step is below it.
type ancestor struct {
	cg cgroupfs.Cgroup
	// events is memory.events.local: the ancestor's own limit events.
	// memory.events counts the descendants' too, so a neighbour at its
	// own memory.high would look like reclaim that reaches every step.
	// tree is memory.events, for the oom_kill count of the whole session.
	events, tree *knob
	limit        uint64 // memory.events.local high+max at the last look
	seen         bool
	low          uint64 // memory.low last written
	sum          uint64 // protected usage below it, this look
	read         bool   // memory.events read this look
	grew         bool   // ... and high+max had grown
}

const (
	// protectReclaimLook paces the looks while reclaim runs: the
	// ancestors' lows trail the protected steps' usage by at most this
	// much time. It is also the most one look charges against a budget,
	// so a look after a quiet spell charges one interval, as
	// memcg_agent_ops charges the gaps between its grants up to a cap.
	protectReclaimLook = 250 * time.Millisecond
	// protectIdleLook paces the looks while no reclaim runs and the
	// protected usage holds still: when reclaim starts, the lows miss at
	// most what the steps grew since the last look. Each look wakes
	// several of the daemon's threads; under emulation a look a second
	// cost 0.5% of a vCPU for one protected step (BenchmarkControlPlane).
	protectIdleLook = 2 * time.Second
)

// newProtector returns the mainline protector, or nil in full mode, where
// memcg_agent_ops protects. In monitor-only mode it protects nothing.
func newProtector(d *Daemon) *protector {
	if d.fullMode() {
		return nil
	}
	p := &protector{d: d, steps: map[*step]*protection{},
		anc: map[string]*ancestor{}, stats: api.ProtectionStats{Mechanism: "memory.low"}}
	p.loop = newLazyLoop(d, p.look, p.closeFiles)
	return p
}

// kick asks for a look now (nil-safe: full mode has no protector).
func (p *protector) kick() {
	if p != nil {
		p.loop.kick()
	}
}

// globalScan is the pages scanned by global (not cgroup limit) reclaim,
// summed from /proc/vmstat without building a map of its ~180 counters.
func (p *protector) globalScan() (uint64, error) {
	if p.vmstat == nil {
		p.vmstat = openKnob("/proc/vmstat")
	}
	b, err := p.vmstat.read()
	if err != nil {
		return 0, err
	}
	var sum uint64
	for line := range bytes.Lines(b) {
		k, v, _ := bytes.Cut(bytes.TrimSuffix(line, []byte("\n")), []byte(" "))
		switch string(k) {
		case "pgscan_kswapd", "pgscan_direct", "pgscan_khugepaged", "pgscan_proactive":
			n, _ := parseUint(v)
			sum += n
		}
	}
	return sum, nil
}

// ancestor returns the record of the session or base at path.
func (p *protector) ancestor(path string) *ancestor {
	a := p.anc[path]
	if a == nil {
		a = &ancestor{cg: cgroupfs.Cgroup{Path: path}, events: openKnob(filepath.Join(path, "memory.events.local")),
			tree: openKnob(filepath.Join(path, "memory.events"))}
		p.anc[path] = a
	}
	return a
}

func (a *ancestor) close() {
	a.events.close()
	a.tree.close()
}

// limitReclaim reads whether the ancestor's memory.high or memory.max
// made it reclaim since the last look: reclaim that reaches the protected
// steps below it. Once per look.
func (a *ancestor) limitReclaim() bool {
	if a.read {
		return a.grew
	}
	a.read = true
	ev, err := a.events.flatKeyed()
	if err != nil {
		return false
	}
	v := ev["high"] + ev["max"]
	a.grew = a.seen && v > a.limit
	a.limit, a.seen = v, true
	return a.grew
}

// lowSlack is how far an ancestor's memory.low may trail the protected
// usage below it before the protector writes it again: 64 pages, nothing
// next to a working set, and most looks of a step whose usage drifts by a
// few pages then write nothing.
const lowSlack = 256 << 10

// look brings every protected step and its ancestors up to date. It
// returns when to look next and whether any step is protected.
func (p *protector) look() (time.Duration, bool) {
	// Daemon-wide reads first: the daemon's lock is taken before the
	// protector's (createStep and Reload kick with it held).
	d := p.d
	steps := d.stepList()
	mon := d.monitorOnly()
	p.mu.Lock()
	defer p.mu.Unlock()
	now := mono()
	gap := min(now-p.lastLook, protectReclaimLook)
	if p.lastLook == 0 {
		gap = 0
	}
	p.lastLook = now
	scan, err := p.globalScan()
	reclaim := err == nil && p.scan != 0 && scan > p.scan
	if err == nil {
		p.scan = scan
	}
	for _, a := range p.anc {
		a.read, a.grew, a.sum = false, false, 0
	}
	base := p.ancestor(d.tree.Root().Path)
	reclaim = base.limitReclaim() || reclaim

	live := map[*step]bool{}
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
			p.drop(s)
			continue
		}
		if budget <= 0 {
			budget = memcgops.DefaultProtectBudget
		}
		live[s] = true
		if pr == nil {
			pr = &protection{events: openKnob(filepath.Join(s.cg.Path, "memory.events")),
				current: openKnob(filepath.Join(s.cg.Path, "memory.current"))}
			p.steps[s] = pr
		}
		if pr.revoked != "" {
			continue
		}
		sess := p.ancestor(filepath.Dir(s.cg.Path))
		sessReclaim := sess.limitReclaim()
		ev, err := pr.events.flatKeyed()
		if err != nil {
			continue // the step is going; its removal kicks another look
		}
		sev, _ := sess.tree.flatKeyed()
		if !pr.began {
			pr.maxBase, pr.oomBase, pr.sessOOMBase = ev["max"], ev["oom"], sev["oom_kill"]
			if err := s.cg.Write("memory.low", "max"); err != nil {
				pr.revoked = "error"
				events = append(events, p.event(s, "protect_failed", "", err.Error()))
				continue
			}
			pr.began = true
			p.stats.Granted++
			events = append(events, p.event(s, "protected", "", fmt.Sprintf("memory.low=max, budget %v under reclaim", budget)))
		}
		cause := ""
		switch {
		case ev["max"] > pr.maxBase:
			cause = "max"
		case ev["oom"] > pr.oomBase || sev["oom_kill"] > pr.sessOOMBase:
			cause = "oom"
		}
		if cause == "" && (reclaim || sessReclaim) {
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
		b, err := pr.current.read()
		cur, ok := parseUint(bytes.TrimSpace(b))
		if err != nil || !ok {
			continue
		}
		sess.sum += cur
		base.sum += cur
		reclaim = reclaim || sessReclaim // a session's limit reclaim paces the looks too
	}
	for s := range p.steps {
		if !live[s] {
			p.drop(s)
		}
	}
	// Ancestors: the new sums, and 0 where protection has ended.
	protected := 0
	for _, pr := range p.steps {
		if pr.revoked == "" {
			protected++
		}
	}
	moved := false
	for path, a := range p.anc {
		want := a.sum
		gone := false
		if a.low != want && (want == 0 || a.low == 0 || absDiff(a.low, want) >= lowSlack) {
			if err := a.cg.WriteLimit("memory.low", want); err == nil {
				a.low, moved = want, true
			} else if gone = !a.cg.Exists(); !gone {
				events = append(events, eventlog.Event{Kind: "error", Detail: "memory.low of " + path, Error: err.Error()})
			}
		}
		if gone || (want == 0 && a.low == 0) {
			a.close()
			delete(p.anc, path) // nothing protected below it any more
		}
	}
	p.stats.Protected = protected
	p.stats.LowBytes = base.low
	for _, e := range events {
		d.log.Emit(e)
	}
	if len(p.steps) == 0 {
		p.vmstat.close()
		p.vmstat = nil
		return 0, false
	}
	if reclaim || moved {
		// Under reclaim, and while a protected step is growing or
		// shrinking (building its working set, typically right after it
		// starts), the lows are followed closely; a settled step costs a
		// look every protectIdleLook.
		return protectReclaimLook, true
	}
	return protectIdleLook, true
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// closeFiles closes what the protector holds open when the daemon stops;
// the lows stay, for the next daemon to adopt with the steps.
func (p *protector) closeFiles() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for s := range p.steps {
		p.drop(s)
	}
	for path, a := range p.anc {
		a.close()
		delete(p.anc, path)
	}
	p.vmstat.close()
	p.vmstat = nil
}

// drop forgets a step that is gone or no longer protected.
func (p *protector) drop(s *step) {
	if pr := p.steps[s]; pr != nil {
		pr.events.close()
		pr.current.close()
		delete(p.steps, s)
	}
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
