package neighbour

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
)

func TestBlowupPlan(t *testing.T) {
	got := BlowupPlan(trial.MemoryBlowupParams{TargetBytes: 5<<20 + 4096, ChunkBytes: 2 << 20})
	want := []int64{2 << 20, 2 << 20, 1<<20 + 4096}
	if len(got) != len(want) {
		t.Fatalf("%v", got)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%v, want %v", got, want)
		}
	}
	if n := len(BlowupPlan(trial.MemoryBlowupParams{TargetBytes: 3 << 20})); n != 3 {
		t.Errorf("default chunk 1M: %d chunks", n)
	}
}

func TestMemoryBlowupReachesTargetAtRate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	st, err := MemoryBlowup(ctx, trial.MemoryBlowupParams{TargetBytes: 8 << 20, RateBytesPerSec: 40 << 20}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if st.Peak != 8<<20 {
		t.Errorf("peak %d, want %d", st.Peak, 8<<20)
	}
	// 8 MiB at 40 MiB/s takes ~175 ms (the first chunk is free); then it
	// re-touches until the context ends.
	if el := time.Since(start); el < 350*time.Millisecond {
		t.Errorf("returned after %v, before its context ended", el)
	}
	if st.Ops <= 8 {
		t.Errorf("ops %d: did not keep re-touching after the target", st.Ops)
	}
}

func TestMemoryBlowupRateLimits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	st, _ := MemoryBlowup(ctx, trial.MemoryBlowupParams{TargetBytes: 64 << 20, RateBytesPerSec: 10 << 20}, 1)
	// ~1 MiB in 100 ms at 10 MiB/s (plus the first chunk at once).
	if st.Peak > 3<<20 {
		t.Errorf("mapped %d bytes in 100 ms at 10 MiB/s", st.Peak)
	}
}

func TestForkStormBoundsConcurrency(t *testing.T) {
	var alive, peak, started atomic.Int64
	start := func() (func() error, error) {
		n := alive.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		started.Add(1)
		return func() error { time.Sleep(2 * time.Millisecond); alive.Add(-1); return nil }, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	st := ForkStorm(ctx, trial.ForkStormParams{Concurrency: 3}, start)
	if peak.Load() > 3 {
		t.Errorf("peak %d alive, concurrency 3", peak.Load())
	}
	if st.Ops != started.Load() || st.Ops < 50 {
		t.Errorf("reaped %d of %d started", st.Ops, started.Load())
	}
}

func TestForkStormRateAndFailures(t *testing.T) {
	var calls atomic.Int64
	start := func() (func() error, error) {
		if calls.Add(1)%2 == 0 {
			return nil, syscall.EAGAIN // pids.max
		}
		return func() error { return nil }, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	st := ForkStorm(ctx, trial.ForkStormParams{Rate: 100, Concurrency: 4}, start)
	total := st.Ops + st.Failed
	if total < 30 || total > 60 {
		t.Errorf("%d attempts in 0.5 s at 100/s", total)
	}
	if st.Failed == 0 || st.Ops == 0 {
		t.Errorf("ops %d failed %d", st.Ops, st.Failed)
	}
}

func TestCPUSpinStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	st := CPUSpin(ctx, trial.CPUSpinParams{Threads: 2})
	if st.Ops == 0 {
		t.Error("no work done")
	}
}
