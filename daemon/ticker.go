package daemon

import (
	"sync"
	"time"

	"github.com/agentcgroup/agentcgroup/daemon/eventlog"
)

// ticker wakes steps that asked to be looked at by a time: one timer for
// all of them, armed for the earliest, and only while some step waits. A
// timer wakeup is the dear part of a look: under emulation a bare 10 Hz Go
// timer costs several percent of a vCPU. So each step asks for the time
// its pending transition could fire (escalate.Machine.NextLook) instead
// of a look every tick, and times are rounded up to the daemon.tick grid,
// so steps due within one tick share a wakeup.
type ticker struct {
	d    *Daemon
	mu   sync.Mutex
	due  map[*step]time.Duration // monotonic time of the step's next look
	wake chan struct{}           // the earliest time moved forward
	on   bool                    // run goes
}

func newTicker(d *Daemon) *ticker {
	return &ticker{d: d, due: map[*step]time.Duration{}, wake: make(chan struct{}, 1)}
}

// set asks for a look at s at time at (monotonic), or with ok false
// cancels its look.
func (t *ticker) set(s *step, at time.Duration, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, had := t.due[s]
	switch {
	case !ok && !had:
		return
	case !ok:
		delete(t.due, s)
		return // run finds out at its next wakeup
	}
	t.due[s] = at
	if !t.on {
		t.on = true
		go t.run()
		return
	}
	if !had || at < old {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// slot is the tick-grid time a look due at at is made.
func slot(at, tick time.Duration) time.Duration {
	if tick <= 0 {
		return at
	}
	return (at + tick - 1) / tick * tick
}

func (t *ticker) run() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		tick := t.d.tick()
		t.mu.Lock()
		if len(t.due) == 0 {
			t.on = false
			t.mu.Unlock()
			return
		}
		first := time.Duration(-1)
		for _, at := range t.due {
			if first < 0 || at < first {
				first = at
			}
		}
		now := mono()
		wait := slot(first, tick) - now
		if wait <= 0 {
			// Everything due by now's slot goes in one wakeup.
			until := slot(now, tick)
			var kick []*step
			for s, at := range t.due {
				if at <= until {
					kick = append(kick, s)
					delete(t.due, s)
				}
			}
			t.mu.Unlock()
			ts := eventlog.Mono()
			for _, s := range kick {
				s.kickAt("tick", ts)
			}
			continue
		}
		t.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-t.d.ctx.Done():
			t.mu.Lock()
			t.on = false
			t.mu.Unlock()
			return
		case <-t.wake:
			timer.Stop() // no stale expiry is delivered after Stop (Go 1.23 timers)
		case <-timer.C:
		}
	}
}
