// Package escalate is the per-step escalation state machine
// RUNNING -> THROTTLED -> SOFT_PAUSED -> KILLED. It is pure: the daemon feeds
// it observations and carries out the action of each transition, so the
// rules can be tested without a kernel.
//
// The rule, with the thresholds of config.Escalation:
//
//   - RUNNING -> THROTTLED on any pressure: thrash score >= throttle_score,
//     growth of memory.events "high", "max", "oom" or "oom_kill", or the PSI
//     trigger firing. The kernel does the throttling (memory.high, the BPF
//     delay); the state records it.
//   - THROTTLED -> SOFT_PAUSED (freeze) once pressure has been severe for
//     freeze_after: score >= freeze_score, or without a probe memory.events
//     "high" still growing, or the step hitting its memory.max ("max",
//     "oom" or "oom_kill" growing). With others_psi_some_avg10 set, a step
//     is frozen only while another step's memory.pressure some avg10 is at
//     least that, or while it is at its own memory.max.
//   - SOFT_PAUSED -> THROTTLED (thaw) after thaw_after, unless
//     others_psi_some_avg10 is set and other steps still suffer.
//   - THROTTLED -> KILLED in place of a further freeze once max_freezes
//     freezes were spent, and only with one of two causes:
//     "max"/"oom": memory.events "max", "oom" or "oom_kill" grew since the
//     step was last frozen or thawed (or, never frozen, since RUNNING): it
//     is at its hard limit, the kernel is already failing its allocations,
//     and pausing it cannot make them succeed;
//     "others_hurt": others_psi_some_avg10 is set and another step's
//     memory.pressure some avg10 is at least that.
//     Without a cause the step is frozen again instead: it stays in the
//     throttle/freeze/thaw cycle, progressing between freezes, for as long
//     as its pressure lasts. Pressure that harms only the step itself, below
//     its hard limit, slows it and never kills it.
//   - THROTTLED -> RUNNING after clear_after without any pressure.
//
// Exempt steps are throttled by the kernel like any other but never frozen
// or killed. max_freezes = 0 never kills.
//
// Apart from this per-step rule, the daemon's node guard kills one Killable
// step at a time, the largest, when the node's available memory falls to
// its floor (NodeKill, cause "node_low").
package escalate

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/daemon/config"
)

// State of a step.
type State int

const (
	Running State = iota
	Throttled
	SoftPaused
	Killed
)

var stateNames = [...]string{"RUNNING", "THROTTLED", "SOFT_PAUSED", "KILLED"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// ParseState is the inverse of String.
func ParseState(s string) (State, bool) {
	for i, n := range stateNames {
		if n == s {
			return State(i), true
		}
	}
	return 0, false
}

// Action the daemon must carry out for a transition.
type Action string

const (
	None   Action = ""
	Freeze Action = "freeze"
	Thaw   Action = "thaw"
	Kill   Action = "kill"
)

// Input is one observation of a step.
type Input struct {
	Now       time.Duration // monotonic clock
	Score     uint32        // thrash score, already 0 when stale
	Probe     bool          // the in-kernel probe is running
	HighDelta uint64        // memory.events "high" growth since the last input
	// memory.events growth since the last input at the hard limit: "max"
	// counts charges that met memory.max, "oom" reclaim at memory.max that
	// failed, "oom_kill" tasks of the step the kernel killed.
	MaxDelta, OOMDelta, OOMKillDelta uint64
	PSIFired                         bool    // the step's PSI trigger fired since the last input
	OthersPSIAvg10                   float64 // highest memory.pressure some avg10 among other steps
	// PressureAt, when not 0, is when the kernel last handled the step
	// over memory.high (the in-kernel writer's timestamp, on the clock of
	// Now): the latest moment the pressure in this input can date from.
	// It lets memory.events growth found by a late look count from when
	// it happened instead of from the look.
	PressureAt time.Duration
}

// KillCause is the rule that allowed a kill.
type KillCause string

const (
	// KillOOM: memory.events "oom" or "oom_kill" grew: reclaim at the
	// step's memory.max failed.
	KillOOM KillCause = "oom"
	// KillMax: memory.events "max" grew: the step's charges met memory.max.
	KillMax KillCause = "max"
	// KillOthersHurt: other steps' memory.pressure some avg10 reached the
	// profile's others_psi_some_avg10.
	KillOthersHurt KillCause = "others_hurt"
	// KillNodeLow: the node's available memory fell to the daemon's
	// node_available_floor and the step was the largest one that may be
	// killed (see NodeKill).
	KillNodeLow KillCause = "node_low"
)

// Transition is a state change with its cause.
type Transition struct {
	From, To State
	Action   Action
	// Cause explains the transition. A kill's starts with what allowed it:
	// "memory.events max +N..." (or "memory.events oom +N..."), or
	// "others' memory.pressure avg10 ...".
	Cause string
	Kill  KillCause // set on Kill actions only
}

// Machine tracks one step.
type Machine struct {
	P       config.Escalation
	State   State
	Since   time.Duration // entered State
	Freezes int

	lastPressure time.Duration
	lastLook     time.Duration // Now of the previous input
	severeSince  time.Duration // 0: not severe
	// memory.events growth at the hard limit since the step was last
	// frozen, thawed or back in RUNNING: the evidence for a "max"/"oom" kill.
	hardMax, hardOOM, hardOOMKill uint64
}

// New returns a machine in RUNNING at now.
func New(p config.Escalation, now time.Duration) *Machine {
	return &Machine{P: p, Since: now}
}

// Restore puts a machine into a state found on disk (a frozen cgroup after a
// daemon restart), counting the time from now.
func Restore(p config.Escalation, s State, freezes int, now time.Duration) *Machine {
	return &Machine{P: p, State: s, Since: now, Freezes: freezes, lastPressure: now}
}

func (m *Machine) to(s State, a Action, now time.Duration, cause string) *Transition {
	t := &Transition{From: m.State, To: s, Action: a, Cause: cause}
	if a == Freeze || a == Thaw || s == Running {
		// Growth seen before a freeze or during one says nothing about
		// the step after it, nor does growth from an earlier episode.
		m.hardMax, m.hardOOM, m.hardOOMKill = 0, 0, 0
	}
	m.State, m.Since = s, now
	return t
}

// hardText lists the counters that grew, as "memory.events max +3, oom +1".
func hardText(maxD, oomD, killD uint64) string {
	var parts []string
	for _, c := range []struct {
		name string
		n    uint64
	}{{"max", maxD}, {"oom", oomD}, {"oom_kill", killD}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%s +%d", c.name, c.n))
		}
	}
	return "memory.events " + strings.Join(parts, ", ")
}

// Step feeds one observation and returns the transition it causes, if any.
func (m *Machine) Step(in Input) *Transition {
	p := m.P
	throttleScore := max(p.ThrottleScore, 1)
	freezeScore := p.FreezeScore
	if freezeScore == 0 {
		freezeScore = throttleScore
	}
	atLimit := in.MaxDelta+in.OOMDelta+in.OOMKillDelta > 0
	m.hardMax += in.MaxDelta
	m.hardOOM += in.OOMDelta
	m.hardOOMKill += in.OOMKillDelta
	var cause string
	switch {
	case in.Score >= throttleScore:
		cause = fmt.Sprintf("thrash_score %d >= %d", in.Score, throttleScore)
	case in.HighDelta > 0:
		cause = fmt.Sprintf("memory.events high +%d", in.HighDelta)
	case atLimit:
		cause = hardText(in.MaxDelta, in.OOMDelta, in.OOMKillDelta)
	case in.PSIFired:
		cause = "memory.pressure trigger fired"
	}
	pressured := cause != ""
	severe := in.Score >= freezeScore || (!in.Probe && in.HighDelta > 0) || atLimit
	defer func() { m.lastLook = in.Now }()
	if pressured {
		at := in.Now
		if in.PressureAt > m.lastLook && in.PressureAt < at && in.Score < throttleScore && !atLimit && !in.PSIFired {
			// Only memory.events "high" growth, and the kernel handled
			// the step over high since the last look: date it from then.
			at = in.PressureAt
		}
		m.lastPressure = max(m.lastPressure, at)
	}

	switch m.State {
	case Running:
		if pressured {
			m.severeSince = 0
			if severe {
				m.severeSince = in.Now
			}
			return m.to(Throttled, None, in.Now, cause)
		}
	case Throttled:
		if severe {
			if m.severeSince == 0 {
				m.severeSince = in.Now
			}
		} else {
			m.severeSince = 0
		}
		if !p.Exempt && p.FreezeAfter > 0 && m.severeSince != 0 && in.Now-m.severeSince >= p.FreezeAfter.D() {
			if t := m.escalate(in, freezeScore); t != nil {
				return t
			}
		}
		if in.Now-m.lastPressure >= p.ClearAfter.D() {
			return m.to(Running, None, in.Now, fmt.Sprintf("no pressure for %v", p.ClearAfter.D()))
		}
	case SoftPaused:
		if p.ThawAfter == 0 || in.Now-m.Since < p.ThawAfter.D() {
			return nil
		}
		if p.OthersPSIAvg10 > 0 && in.OthersPSIAvg10 >= p.OthersPSIAvg10 {
			return nil // the others still suffer: stay frozen
		}
		m.severeSince, m.lastPressure = 0, in.Now
		return m.to(Throttled, Thaw, in.Now, fmt.Sprintf("pressure cleared: thawed after %v frozen", (in.Now-m.Since).Round(time.Millisecond)))
	case Killed:
	}
	return nil
}

// Killable reports whether the node guard may end the step: the same
// steps the escalation rule may kill, the not exempt ones with
// max_freezes set, and not already killed.
func (m *Machine) Killable() bool {
	return m.State != Killed && !m.P.Exempt && m.P.MaxFreezes > 0
}

// NodeKill moves a Killable step to KILLED for the node's sake, whatever
// its state: the node is about to run out of memory and the kernel's OOM
// killer would otherwise stall every allocating task, protected ones
// included, before it picks a task itself. It returns nil for a step that
// is not Killable.
func (m *Machine) NodeKill(now time.Duration, why string) *Transition {
	if !m.Killable() {
		return nil
	}
	t := m.to(Killed, Kill, now, why)
	t.Kill = KillNodeLow
	return t
}

// NextLook is when the step must be observed next if no kernel signal
// wakes it first, and false when only a kernel signal can change its
// state. Looks cost a wakeup each, so a step waits for the time its
// pending transition could fire rather than looking every tick:
//
//   - THROTTLED, clearing: at lastPressure + clear_after. A step that is
//     still pressured then pushes its deadline on by clear_after, so a
//     step throttled for a long time is looked at once per clear_after.
//   - THROTTLED, freeze possible (not exempt, freeze_after set): severity
//     that began since the last look is found within a quarter of
//     freeze_after (never more often than tick), and once severe the step
//     is looked at every tick, since the freeze needs severity held for
//     all of freeze_after.
//   - SOFT_PAUSED with thaw_after: at the thaw, then every tick while
//     other steps' pressure keeps it frozen.
//
// The result is never before now.
func (m *Machine) NextLook(now, tick time.Duration) (time.Duration, bool) {
	p := m.P
	switch m.State {
	case Throttled:
		at := m.lastPressure + p.ClearAfter.D()
		if !p.Exempt && p.FreezeAfter > 0 {
			if m.severeSince != 0 {
				at = min(at, now+tick)
			} else {
				at = min(at, now+max(tick, p.FreezeAfter.D()/4))
			}
		}
		return max(at, now), true
	case SoftPaused:
		if p.ThawAfter == 0 {
			return 0, false
		}
		at := m.Since + p.ThawAfter.D()
		if at <= now {
			at = now + tick
		}
		return at, true
	}
	return 0, false
}

// escalate decides, once severe pressure has lasted freeze_after, between a
// kill (max_freezes spent and a kill cause holds), a freeze, and nothing
// (others_psi_some_avg10 set, no other step suffers, the step is below its
// hard limit).
func (m *Machine) escalate(in Input, freezeScore uint32) *Transition {
	p := m.P
	atLimit := m.hardMax+m.hardOOM+m.hardOOMKill > 0
	othersHurt := p.OthersPSIAvg10 > 0 && in.OthersPSIAvg10 >= p.OthersPSIAvg10
	others := fmt.Sprintf("others' memory.pressure avg10 %.2f >= %.2f", in.OthersPSIAvg10, p.OthersPSIAvg10)
	why := fmt.Sprintf("severe pressure (score %d, freeze_score %d) for %v", in.Score, freezeScore, (in.Now - m.severeSince).Round(time.Millisecond))
	spent := p.MaxFreezes > 0 && m.Freezes >= p.MaxFreezes
	if spent {
		var t *Transition
		switch {
		case atLimit:
			t = m.to(Killed, Kill, in.Now, fmt.Sprintf("%s: at its memory.max after %d freezes; %s",
				hardText(m.hardMax, m.hardOOM, m.hardOOMKill), m.Freezes, why))
			t.Kill = KillMax
			if m.hardOOM+m.hardOOMKill > 0 {
				t.Kill = KillOOM
			}
		case othersHurt:
			t = m.to(Killed, Kill, in.Now, fmt.Sprintf("%s after %d freezes; %s", others, m.Freezes, why))
			t.Kill = KillOthersHurt
		}
		if t != nil {
			return t
		}
	}
	if p.OthersPSIAvg10 > 0 && !othersHurt && !atLimit {
		return nil // only the step itself suffers: the kernel's throttle is enough
	}
	if othersHurt {
		why += ", " + others
	}
	if atLimit {
		why += ", at its memory.max (" + hardText(m.hardMax, m.hardOOM, m.hardOOMKill) + ")"
	}
	if spent {
		why += fmt.Sprintf("; max_freezes %d spent but no kill cause (memory.events max/oom did not grow", p.MaxFreezes)
		if p.OthersPSIAvg10 > 0 {
			why += ", other steps' memory.pressure avg10 below " + strconv.FormatFloat(p.OthersPSIAvg10, 'f', 2, 64)
		}
		why += "): frozen again"
	}
	m.Freezes++
	return m.to(SoftPaused, Freeze, in.Now, why)
}
