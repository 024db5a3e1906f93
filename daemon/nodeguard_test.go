package daemon

import (
	"testing"
	"time"
)

// The guard's looks come closer as MemAvailable nears the floor at the
// fastest fall seen, between a tick and nodeGuardIdleLook apart; a look
// with no earlier one to measure against is followed a tick later.
func TestNodeGuardPace(t *testing.T) {
	const mib = 1 << 20
	tick := 100 * time.Millisecond
	for _, c := range []struct {
		name         string
		fall         float64 // bytes/s
		fresh        bool
		avail, floor uint64
		want         time.Duration
	}{
		{"holding still", 0, false, 400 * mib, 48 * mib, nodeGuardIdleLook},
		{"far off", 100 * mib, false, 448 * mib, 48 * mib, nodeGuardIdleLook},         // 4 s away: capped
		{"closing in", 100 * mib, false, 148 * mib, 48 * mib, 500 * time.Millisecond}, // half of 1 s
		{"about to reach it", 200 * mib, false, 58 * mib, 48 * mib, tick},             // 25 ms: one tick
		{"at it (monitor-only)", 200 * mib, false, 40 * mib, 48 * mib, tick},
		{"first look, or first after a kill", 0, true, 400 * mib, 48 * mib, tick},
	} {
		g := &nodeGuard{fall: c.fall, fresh: c.fresh}
		if got := g.pace(c.avail, c.floor, tick); got != c.want {
			t.Errorf("%s: next look in %v, want %v", c.name, got, c.want)
		}
	}
}
