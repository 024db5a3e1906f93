package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/daemon/config"
)

func TestSlotRoundsUpToTheTickGrid(t *testing.T) {
	for _, c := range []struct{ at, want time.Duration }{{0, 0}, {1, 100}, {100, 100}, {101, 200}, {199, 200}} {
		if got := slot(c.at, 100); got != c.want {
			t.Errorf("slot(%v) = %v, want %v", c.at, got, c.want)
		}
	}
}

// Steps due within one tick share a wakeup; a step taken off is not woken;
// the ticker stops once nothing waits.
func TestTickerWakesDueStepsTogether(t *testing.T) {
	cfg := config.Defaults()
	cfg.Daemon.Tick = config.Duration(50 * time.Millisecond)
	d := &Daemon{cfg: &cfg}
	var cancel context.CancelFunc
	d.ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	tk := newTicker(d)
	mk := func() *step { return &step{wake: make(chan wakeup, 1)} }
	a, b, c := mk(), mk(), mk()
	// Due in the same tick slot, well ahead of now.
	base := slot(mono()+200*time.Millisecond, 50*time.Millisecond)
	tk.set(a, base-40*time.Millisecond, true)
	tk.set(b, base-5*time.Millisecond, true)
	tk.set(c, base+time.Hour, true)
	tk.set(c, 0, false)
	var at [2]uint64
	for i, s := range []*step{a, b} {
		select {
		case w := <-s.wake:
			at[i] = w.at
		case <-time.After(5 * time.Second):
			t.Fatalf("step %d not woken", i)
		}
	}
	if at[0] != at[1] {
		t.Errorf("two steps due in one tick slot were woken apart (%d, %d)", at[0], at[1])
	}
	if time.Duration(at[0]) < base {
		t.Errorf("woken at %v, before the slot of its look (%v)", time.Duration(at[0]), base)
	}
	select {
	case <-c.wake:
		t.Error("a cancelled look woke its step")
	case <-time.After(100 * time.Millisecond):
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		tk.mu.Lock()
		on := tk.on
		tk.mu.Unlock()
		if !on {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the ticker still runs with no step waiting")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
