// Package escalate is the per-step escalation state machine
// RUNNING -> THROTTLED -> SOFT_PAUSED -> KILLED. It is pure: the daemon feeds
// it observations and carries out the action of each transition, so the
// rules can be tested without a kernel.
package escalate

import (
	"fmt"
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
	Now            time.Duration // monotonic clock
	Score          uint32        // thrash score, already 0 when stale
	Probe          bool          // the in-kernel probe is running
	HighDelta      uint64        // memory.events "high" growth since the last input
	PSIFired       bool          // the step's PSI trigger fired since the last input
	OthersPSIAvg10 float64       // highest memory.pressure some avg10 among other steps
}

// Transition is a state change with its cause.
type Transition struct {
	From, To State
	Action   Action
	Cause    string
}

// Machine tracks one step.
type Machine struct {
	P       config.Escalation
	State   State
	Since   time.Duration // entered State
	Freezes int

	lastPressure time.Duration
	severeSince  time.Duration // 0: not severe
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
	m.State, m.Since = s, now
	return t
}

// Step feeds one observation and returns the transition it causes, if any.
func (m *Machine) Step(in Input) *Transition {
	p := m.P
	throttleScore := max(p.ThrottleScore, 1)
	freezeScore := p.FreezeScore
	if freezeScore == 0 {
		freezeScore = throttleScore
	}
	var cause string
	switch {
	case in.Score >= throttleScore:
		cause = fmt.Sprintf("thrash_score %d >= %d", in.Score, throttleScore)
	case in.HighDelta > 0:
		cause = fmt.Sprintf("memory.events high +%d", in.HighDelta)
	case in.PSIFired:
		cause = "memory.pressure trigger fired"
	}
	pressured := cause != ""
	severe := in.Score >= freezeScore || (!in.Probe && in.HighDelta > 0)
	othersHurt := p.OthersPSIAvg10 == 0 || in.OthersPSIAvg10 >= p.OthersPSIAvg10
	if pressured {
		m.lastPressure = in.Now
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
		if !p.Exempt && p.FreezeAfter > 0 && m.severeSince != 0 &&
			in.Now-m.severeSince >= p.FreezeAfter.D() && othersHurt {
			why := fmt.Sprintf("severe pressure (score %d, freeze_score %d) for %v", in.Score, freezeScore, (in.Now - m.severeSince).Round(time.Millisecond))
			if p.OthersPSIAvg10 > 0 {
				why += fmt.Sprintf(", other steps' memory.pressure avg10 %.2f >= %.2f", in.OthersPSIAvg10, p.OthersPSIAvg10)
			}
			if p.MaxFreezes > 0 && m.Freezes >= p.MaxFreezes {
				return m.to(Killed, Kill, in.Now, why+fmt.Sprintf(" after %d freezes", m.Freezes))
			}
			m.Freezes++
			return m.to(SoftPaused, Freeze, in.Now, why)
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
