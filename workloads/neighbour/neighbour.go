// Package neighbour holds the noisy neighbours: unmeasured workloads that
// compete with victims for CPU, process slots or memory. Each runs until its
// context ends and reports how much it did.
package neighbour

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/load"
)

// Stats is what a neighbour did.
type Stats struct {
	Ops    int64 // cpu_spin: millions of loop iterations; fork_storm: children reaped; memory_blowup: MiB touched
	Failed int64 // fork_storm: spawn failures (e.g. pids.max reached)
	Peak   int64 // memory_blowup: bytes mapped at the peak
}

// spinChunk is the CPU loop between checks for cancellation (~1 ms).
const spinChunk = 1 << 20

// CPUSpin keeps p.Threads OS threads busy until ctx ends.
func CPUSpin(ctx context.Context, p trial.CPUSpinParams) Stats {
	if runtime.GOMAXPROCS(0) < p.Threads+1 {
		runtime.GOMAXPROCS(p.Threads + 1)
	}
	var ops atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < p.Threads; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			var local uint64
			for ctx.Err() == nil {
				local += load.CPU(spinChunk)
				ops.Add(1)
			}
			load.Sink += local
		}()
	}
	wg.Wait()
	return Stats{Ops: ops.Load()}
}

// Forker creates and reaps children. Start must not block; Reap blocks
// until some child has exited and returns its pid (syscall.ECHILD when none
// is left).
type Forker interface {
	Start() (pid int, err error)
	Reap() (pid int, err error)
}

// ForkStorm starts children at p.Rate per second (0: as fast as it can),
// keeping at most p.Concurrency alive. A refused start (EAGAIN at pids.max)
// is counted and retried after a millisecond: pids.max, not the storm,
// bounds how many run.
func ForkStorm(ctx context.Context, p trial.ForkStormParams, f Forker) Stats {
	reserveThreads(4)
	var reaped, failed, alive atomic.Int64
	// A child may exit and be reaped before its starter has recorded its
	// pid, so the reaper notes unknown pids and the starter checks them.
	var mu sync.Mutex
	pending := map[int]bool{} // started, not yet reaped
	early := map[int]bool{}   // reaped before being recorded (or not ours)
	done := func() {
		alive.Add(-1)
		reaped.Add(1)
	}
	freed := make(chan struct{}, 1)
	// One reaper, so the storm needs a fixed handful of threads: under a
	// tight pids.max the Go runtime could not create more. It reaps any
	// child but counts only ours (a failed exec is reaped by its starter).
	var wg sync.WaitGroup
	var stopping atomic.Bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			pid, err := f.Reap()
			switch {
			case err == nil:
				mu.Lock()
				if pending[pid] {
					delete(pending, pid)
					done()
				} else {
					early[pid] = true
				}
				mu.Unlock()
				select {
				case freed <- struct{}{}:
				default:
				}
			case errors.Is(err, syscall.ECHILD):
				if stopping.Load() && alive.Load() == 0 {
					return
				}
				time.Sleep(time.Millisecond)
			case errors.Is(err, syscall.EINTR):
			default:
				time.Sleep(time.Millisecond)
			}
		}
	}()
	var interval time.Duration
	if p.Rate > 0 {
		interval = time.Duration(float64(time.Second) / p.Rate)
	}
	next := time.Now()
	sleep := func(d time.Duration) bool {
		if d <= 0 {
			return ctx.Err() == nil
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
loop:
	for ctx.Err() == nil {
		if interval > 0 {
			if !sleep(time.Until(next)) {
				break
			}
			next = next.Add(interval)
		}
		for alive.Load() >= int64(p.Concurrency) {
			select {
			case <-freed:
			case <-time.After(10 * time.Millisecond): // a missed wake-up costs at most this
			case <-ctx.Done():
				break loop
			}
		}
		// Count the child as alive before it can possibly be reaped.
		alive.Add(1)
		pid, err := f.Start()
		if err != nil {
			alive.Add(-1)
			failed.Add(1)
			if !sleep(time.Millisecond) {
				break
			}
			continue
		}
		mu.Lock()
		if early[pid] {
			delete(early, pid)
			done()
		} else {
			pending[pid] = true
		}
		mu.Unlock()
	}
	stopping.Store(true)
	wg.Wait()
	return Stats{Ops: reaped.Load(), Failed: failed.Load()}
}

// ForkExit forks children that live Hold and exit (fork/exit, no exec):
// the cost is the kernel's process creation and teardown, including
// copying the parent's page tables.
type ForkExit struct{ Hold time.Duration }

// Start forks one child.
func (f ForkExit) Start() (int, error) {
	var hold *syscall.Timespec
	if f.Hold > 0 {
		ts := syscall.NsecToTimespec(int64(f.Hold))
		hold = &ts
	}
	pid, err := forkExit(hold)
	if err != 0 {
		return 0, err
	}
	return pid, nil
}

// Reap waits for any child.
func (ForkExit) Reap() (int, error) { return reapAny() }

// ForkExec forks and executes Path (e.g. /bin/true) with no arguments.
type ForkExec struct{ Path string }

// Start starts one child.
func (f ForkExec) Start() (int, error) {
	return syscall.ForkExec(f.Path, []string{f.Path}, &syscall.ProcAttr{Files: []uintptr{}})
}

// Reap waits for any child.
func (ForkExec) Reap() (int, error) { return reapAny() }

func reapAny() (int, error) {
	var ws syscall.WaitStatus
	return syscall.Wait4(-1, &ws, 0, nil)
}

// BlowupPlan is the sequence of chunk sizes a memory_blowup maps, up to the
// target.
func BlowupPlan(p trial.MemoryBlowupParams) []int64 {
	chunk := int64(p.ChunkBytes)
	if chunk == 0 {
		chunk = 1 << 20
	}
	var out []int64
	for left := int64(p.TargetBytes); left > 0; left -= chunk {
		out = append(out, min(chunk, left))
	}
	return out
}

// BlowupShares splits a memory_blowup between its threads: each thread's
// chunk plan and rate (bytes per second, 0: unlimited). The first threads
// take the remainder's pages, so the shares add up to the target.
func BlowupShares(p trial.MemoryBlowupParams) (plans [][]int64, rate int64) {
	threads := int64(max(p.Threads, 1))
	pages := (int64(p.TargetBytes) + load.PageSize - 1) / load.PageSize
	for i := int64(0); i < threads; i++ {
		share := pages / threads
		if i < pages%threads {
			share++
		}
		q := p
		q.TargetBytes = trial.Bytes(share * load.PageSize)
		plans = append(plans, BlowupPlan(q))
	}
	return plans, int64(p.RateBytesPerSec) / threads
}

// MemoryBlowup maps and touches chunks at p.RateBytesPerSec (0: as fast as
// it can) up to p.TargetBytes, then keeps re-touching everything so the
// memory stays hot and reclaim has to fight for it. p.Threads threads do
// it in parallel, each on its own share; p.Fill says what the pages hold.
// Under memory.max the kernel may OOM-kill it; that is an outcome, not an
// error.
func MemoryBlowup(ctx context.Context, p trial.MemoryBlowupParams, seed uint64) (Stats, error) {
	plans, rate := BlowupShares(p)
	if runtime.GOMAXPROCS(0) < len(plans)+1 {
		runtime.GOMAXPROCS(len(plans) + 1)
	}
	var mib, mapped atomic.Int64
	errs := make([]error, len(plans))
	var wg sync.WaitGroup
	for i, plan := range plans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One OS thread per share: faults and reclaim happen in
			// the thread that touches, so this is what keeps
			// len(plans) CPUs busy.
			runtime.LockOSThread()
			ts := seed // one thread writes what the single-threaded blow-up always wrote
			if len(plans) > 1 {
				ts = load.SubSeed(seed, fmt.Sprintf("memory_blowup/%d", i))
			}
			errs[i] = blowupThread(ctx, p.Fill, plan, rate, ts, &mib, &mapped)
		}()
	}
	wg.Wait()
	return Stats{Ops: mib.Load(), Peak: mapped.Load()}, errors.Join(errs...)
}

// blowupThread grows its share chunk by chunk at rate, then re-touches it
// until ctx ends. mib counts whole MiB touched, mapped the bytes mapped.
func blowupThread(ctx context.Context, fill string, plan []int64, rate int64, seed uint64, mib, mapped *atomic.Int64) error {
	var regions []*load.Region
	defer func() {
		for _, r := range regions {
			r.Unmap()
		}
	}()
	rng := load.Rand(seed, "memory_blowup")
	val := rng.Uint64()
	state := rng.Uint64()
	var touched int64 // bytes, carried so sub-MiB chunks still count
	count := func(n int64) {
		touched += n
		mib.Add(touched >> 20)
		touched &= 1<<20 - 1
	}
	start := time.Now()
	var mine int64
	for _, c := range plan {
		if ctx.Err() != nil {
			return nil
		}
		if rate > 0 {
			due := start.Add(time.Duration(float64(mine) / float64(rate) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return nil
				}
			}
		}
		r, err := load.Map(c)
		if err != nil {
			return err
		}
		regions = append(regions, r)
		if fill == trial.FillRandom {
			state = r.FillRandom(0, r.Len(), state)
		} else {
			r.Touch(0, c, val)
		}
		mine += c
		mapped.Add(c)
		count(c)
	}
	for pass := uint64(1); ctx.Err() == nil; pass++ {
		for _, r := range regions {
			if ctx.Err() != nil {
				break
			}
			if fill == trial.FillRandom {
				r.TouchPages(0, r.Len(), val+pass)
			} else {
				r.Touch(0, r.Len(), val)
			}
			count(r.Len())
		}
		if len(regions) == 0 {
			<-ctx.Done()
		}
	}
	return nil
}

// reserveThreads makes the Go runtime start n more OS threads now, while
// pids.max still has room: goroutines that block in a system call at the
// same time each get their processor handed to a new thread. Idle threads
// are kept for reuse, so once the storm fills pids.max the runtime does not
// need to create one (which it cannot survive: failing to create a thread
// is fatal).
func reserveThreads(n int) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts := syscall.NsecToTimespec(int64(30 * time.Millisecond))
			syscall.Syscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
		}()
	}
	wg.Wait()
}
