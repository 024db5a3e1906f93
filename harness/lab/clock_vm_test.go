package lab_test

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/harness/vmtest"
)

// Every guest kernel must give the harness high-resolution timers: the
// victims sleep for periods of a few milliseconds and time themselves, so a
// kernel stuck on a periodic tick (4 ms at HZ=250) would round every sample
// and make results from different kernels incomparable.
func TestGuestClockStock(t *testing.T)   { testGuestClock(t, "stock") }
func TestGuestClockPatched(t *testing.T) { testGuestClock(t, "patched") }

func testGuestClock(t *testing.T, kernel string) {
	if vmtest.Run(t, vmtest.Options{Kernel: kernel, CPUs: 2, MemMB: 512, Timeout: 4 * time.Minute}) {
		return
	}
	cs, _ := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
	t.Logf("clocksource %s", strings.TrimSpace(string(cs)))
	var res unix.Timespec
	if err := unix.ClockGetres(unix.CLOCK_MONOTONIC, &res); err != nil {
		t.Fatal(err)
	}
	if res.Nano() != 1 {
		t.Errorf("CLOCK_MONOTONIC resolution %d ns, want 1 ns (high-resolution timers inactive)", res.Nano())
	}
	// A 1 ms sleep on a 4 ms tick takes 4-8 ms; with hrtimers it takes
	// just over 1 ms plus the emulator's wakeup latency. The median, so a
	// loaded host's stragglers do not decide it.
	const n = 101
	sleeps := make([]time.Duration, n)
	for i := range sleeps {
		t0 := time.Now()
		unix.Nanosleep(&unix.Timespec{Nsec: int64(time.Millisecond)}, nil)
		sleeps[i] = time.Since(t0)
	}
	slices.Sort(sleeps)
	median := sleeps[n/2]
	t.Logf("1 ms nanosleep: median %v, min %v, max %v", median, sleeps[0], sleeps[n-1])
	if median >= 2500*time.Microsecond {
		t.Errorf("1 ms nanosleep takes %v at the median, want < 2.5 ms (timers on a periodic tick?)", median)
	}
}
