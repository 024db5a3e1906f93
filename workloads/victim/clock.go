// Package victim holds the measured workloads: an open-loop interactive
// request loop and a compile/test-like tool burst. Both run on a schedule of
// intended start times and report latency from those times.
package victim

import (
	"context"
	"time"
)

// Clock lets tests drive the loops with simulated time.
type Clock interface {
	Now() time.Time
	// SleepUntil returns at or after t, at once if t has passed, or with
	// ctx's error.
	SleepUntil(ctx context.Context, t time.Time) error
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// SleepUntil sleeps until t.
func (RealClock) SleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
