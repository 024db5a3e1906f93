package daemon

import (
	"sync"
	"time"

	"github.com/agentcgroup/agentcgroup/daemon/eventlog"
)

// ticker paces the steps that have a timed transition pending: one timer
// wakeup per daemon.tick wakes all of them, and it runs only while some
// step needs it. A timer wakeup is the dear part of a periodic look: under
// emulation a bare 10 Hz Go timer costs several percent of a vCPU, so one
// per step would multiply it by the number of throttled steps.
type ticker struct {
	d     *Daemon
	mu    sync.Mutex
	steps map[*step]struct{}
	stop  chan struct{} // non-nil while run goes
}

func newTicker(d *Daemon) *ticker { return &ticker{d: d, steps: map[*step]struct{}{}} }

// set puts a step on the tick, or takes it off.
func (t *ticker) set(s *step, on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, has := t.steps[s]; has == on {
		return
	}
	if on {
		t.steps[s] = struct{}{}
	} else {
		delete(t.steps, s)
	}
	switch {
	case len(t.steps) > 0 && t.stop == nil:
		t.stop = make(chan struct{})
		go t.run(t.stop)
	case len(t.steps) == 0 && t.stop != nil:
		close(t.stop)
		t.stop = nil
	}
}

func (t *ticker) run(stop chan struct{}) {
	period := t.d.tick()
	tk := time.NewTicker(period)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.d.ctx.Done():
			return
		case <-tk.C:
		}
		at := eventlog.Mono()
		t.mu.Lock()
		for s := range t.steps {
			s.kickAt("tick", at)
		}
		t.mu.Unlock()
		// A reload may have changed daemon.tick.
		if p := t.d.tick(); p != period {
			period = p
			tk.Reset(p)
		}
	}
}
