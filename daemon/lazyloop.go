package daemon

import (
	"sync"
	"time"
)

// lazyLoop runs a daemon-wide watcher (the mainline protector, the node
// guard) in a goroutine of its own only while it has something to watch,
// so a daemon without protected or killable steps pays nothing for it.
// kick starts the goroutine, or wakes a running one for a look now; look
// returns when to look next and whether there is anything to watch, and
// the goroutine ends after a look with nothing to watch unless a kick
// came meanwhile (a new step). stop runs once when the daemon shuts down.
type lazyLoop struct {
	d    *Daemon
	look func() (next time.Duration, busy bool)
	stop func()
	wake chan struct{}

	mu sync.Mutex
	on bool
}

func newLazyLoop(d *Daemon, look func() (time.Duration, bool), stop func()) *lazyLoop {
	return &lazyLoop{d: d, look: look, stop: stop, wake: make(chan struct{}, 1)}
}

// kick asks for a look now: a step came or went, or the policy changed.
// Callers may hold the daemon's lock, never a step's.
func (l *lazyLoop) kick() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.on {
		if l.d.ctx.Err() != nil {
			return // shutting down: the daemon's wait group may be waited on
		}
		l.on = true
		l.d.wg.Add(1)
		go l.run()
		return
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *lazyLoop) run() {
	defer l.d.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-l.d.ctx.Done():
			l.stop()
			return
		case <-l.wake:
		case <-timer.C:
		}
		next, busy := l.look()
		if !busy {
			l.mu.Lock()
			select {
			case <-l.wake:
				l.mu.Unlock()
				next = 0
			default:
				l.on = false
				l.mu.Unlock()
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
