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

// fakeForker's children live for a fixed time; Reap returns when one ends.
type fakeForker struct {
	life         time.Duration
	fail         func(n int64) bool
	alive, peak  atomic.Int64
	started, try atomic.Int64
	exits        chan struct{}
}

func newFake(life time.Duration) *fakeForker {
	return &fakeForker{life: life, exits: make(chan struct{}, 1<<16)}
}

func (f *fakeForker) Start() error {
	if f.fail != nil && f.fail(f.try.Add(1)) {
		return syscall.EAGAIN
	}
	n := f.alive.Add(1)
	for p := f.peak.Load(); n > p && !f.peak.CompareAndSwap(p, n); p = f.peak.Load() {
	}
	f.started.Add(1)
	time.AfterFunc(f.life, func() { f.alive.Add(-1); f.exits <- struct{}{} })
	return nil
}

func (f *fakeForker) Reap() error {
	select {
	case <-f.exits:
		return nil
	case <-time.After(5 * time.Millisecond):
		return syscall.ECHILD
	}
}

func TestForkStormBoundsConcurrency(t *testing.T) {
	f := newFake(2 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	st := ForkStorm(ctx, trial.ForkStormParams{Concurrency: 3}, f)
	if f.peak.Load() > 3 {
		t.Errorf("peak %d alive, concurrency 3", f.peak.Load())
	}
	if st.Ops != f.started.Load() || st.Ops < 50 {
		t.Errorf("reaped %d of %d started", st.Ops, f.started.Load())
	}
}

func TestForkStormRateAndFailures(t *testing.T) {
	f := newFake(time.Millisecond)
	f.fail = func(n int64) bool { return n%2 == 0 } // every other start hits pids.max
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	st := ForkStorm(ctx, trial.ForkStormParams{Rate: 100, Concurrency: 4}, f)
	total := st.Ops + st.Failed
	if total < 30 || total > 60 {
		t.Errorf("%d attempts in 0.5 s at 100/s", total)
	}
	if st.Failed == 0 || st.Ops == 0 {
		t.Errorf("ops %d failed %d", st.Ops, st.Failed)
	}
}

// The real fork/exit path: children are created and reaped.
func TestForkExitReal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	st := ForkStorm(ctx, trial.ForkStormParams{Concurrency: 4}, ForkExit{})
	if st.Ops < 10 {
		t.Errorf("only %d children reaped in 200 ms", st.Ops)
	}
	// Children that live 20 ms: at most 4 alive, so about 200/20*4 = 40.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	st = ForkStorm(ctx2, trial.ForkStormParams{Concurrency: 4}, ForkExit{Hold: 20 * time.Millisecond})
	if st.Ops < 8 || st.Ops > 48 {
		t.Errorf("%d children with 20 ms lives and concurrency 4 in 200 ms, want about 40", st.Ops)
	}
	if err := reapAny(); err != syscall.ECHILD {
		t.Errorf("children left behind: wait4 says %v", err)
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
