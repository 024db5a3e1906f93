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

func TestBlowupSharesAddUp(t *testing.T) {
	p := trial.MemoryBlowupParams{TargetBytes: 10<<20 + 3*4096, RateBytesPerSec: 30 << 20, Threads: 3}
	plans, rate := BlowupShares(p)
	if len(plans) != 3 || rate != 10<<20 {
		t.Fatalf("%d plans at %d B/s, want 3 at 10 MiB/s", len(plans), rate)
	}
	var total int64
	for _, pl := range plans {
		for _, c := range pl {
			total += c
		}
	}
	if total != int64(p.TargetBytes) {
		t.Errorf("shares add up to %d, target %d", total, p.TargetBytes)
	}
	if plans, _ := BlowupShares(trial.MemoryBlowupParams{TargetBytes: 3 << 20}); len(plans) != 1 || len(plans[0]) != 3 {
		t.Errorf("threads 0 is one thread with the single-threaded plan: %v", plans)
	}
}

func TestMemoryBlowupThreadsRandomFill(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	st, err := MemoryBlowup(ctx, trial.MemoryBlowupParams{TargetBytes: 6 << 20, Threads: 3, Fill: trial.FillRandom}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if st.Peak != 6<<20 {
		t.Errorf("peak %d, want %d", st.Peak, 6<<20)
	}
	if st.Ops <= 6 {
		t.Errorf("ops %d MiB: the threads did not keep re-touching after the target", st.Ops)
	}
}

func TestMemoryBlowupReachesTargetAtRate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	st, err := MemoryBlowup(ctx, trial.MemoryBlowupParams{TargetBytes: 4 << 20, RateBytesPerSec: 40 << 20}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if st.Peak != 4<<20 {
		t.Errorf("peak %d, want %d", st.Peak, 4<<20)
	}
	// 4 MiB at 40 MiB/s takes ~75 ms (the first chunk is free); then it
	// re-touches until the context ends.
	if el := time.Since(start); el < time.Second {
		t.Errorf("returned after %v, before its context ended", el)
	}
	if st.Ops <= 4 {
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
	exits        chan int
}

func newFake(life time.Duration) *fakeForker {
	return &fakeForker{life: life, exits: make(chan int, 1<<16)}
}

func (f *fakeForker) Start() (int, error) {
	if f.fail != nil && f.fail(f.try.Add(1)) {
		return 0, syscall.EAGAIN
	}
	n := f.alive.Add(1)
	for p := f.peak.Load(); n > p && !f.peak.CompareAndSwap(p, n); p = f.peak.Load() {
	}
	pid := int(f.started.Add(1))
	time.AfterFunc(f.life, func() { f.alive.Add(-1); f.exits <- pid })
	return pid, nil
}

func (f *fakeForker) Reap() (int, error) {
	select {
	case pid := <-f.exits:
		return pid, nil
	case <-time.After(5 * time.Millisecond):
		return 0, syscall.ECHILD
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
	if st.Ops != f.started.Load() || st.Ops == 0 {
		t.Errorf("reaped %d of %d started", st.Ops, f.started.Load())
	}
}

func TestForkStormRateAndFailures(t *testing.T) {
	f := newFake(time.Millisecond)
	f.fail = func(n int64) bool { return n%2 == 0 } // every other start hits pids.max
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	st := ForkStorm(ctx, trial.ForkStormParams{Rate: 100, Concurrency: 4}, f)
	// The rate is a ceiling; a loaded host may stay below it.
	if total := st.Ops + st.Failed; total > 52 {
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
	if st.Ops == 0 {
		t.Error("no children reaped")
	}
	// Children that live 20 ms: at most 4 alive, so about 200/20*4 = 40.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	st = ForkStorm(ctx2, trial.ForkStormParams{Concurrency: 4}, ForkExit{Hold: 20 * time.Millisecond})
	// At most 4 alive for 20 ms each: no more than 4*(200/20+1) in 200 ms.
	if st.Ops == 0 || st.Ops > 44 {
		t.Errorf("%d children with 20 ms lives and concurrency 4 in 200 ms, want 1..44", st.Ops)
	}
	if _, err := reapAny(); err != syscall.ECHILD {
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

// A child that is not ours (here: a failed exec, which the starter reaps
// itself or our reaper may see first) must not upset the accounting.
func TestForkExecMissingProgramStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan Stats)
	go func() {
		done <- ForkStorm(ctx, trial.ForkStormParams{Concurrency: 2}, ForkExec{Path: "/no/such/program"})
	}()
	select {
	case st := <-done:
		if st.Ops != 0 || st.Failed == 0 {
			t.Errorf("ops %d failed %d for a missing program", st.Ops, st.Failed)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fork storm did not stop")
	}
}

func TestForkExecReal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	st := ForkStorm(ctx, trial.ForkStormParams{Concurrency: 4}, ForkExec{Path: "/bin/true"})
	if st.Ops == 0 || st.Failed != 0 {
		t.Errorf("ops %d failed %d", st.Ops, st.Failed)
	}
}
