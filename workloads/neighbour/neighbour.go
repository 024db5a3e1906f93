// Package neighbour holds the noisy neighbours: unmeasured workloads that
// compete with victims for CPU, process slots or memory. Each runs until its
// context ends and reports how much it did.
package neighbour

import (
	"context"
	"errors"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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

// Starter starts one short-lived child and returns a wait function; it is
// a process spawn in production.
type Starter func() (wait func() error, err error)

// ExecStarter re-executes argv (e.g. agentwork's no-op child) each time.
func ExecStarter(argv []string) Starter {
	return func() (func() error, error) {
		cmd := exec.Command(argv[0], argv[1:]...)
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		return cmd.Wait, nil
	}
}

// ForkStorm starts children at p.Rate per second (0: as fast as it can),
// keeping at most p.Concurrency alive. A failed start (EAGAIN at pids.max)
// is counted and retried after a short pause, as a build tool would.
func ForkStorm(ctx context.Context, p trial.ForkStormParams, start Starter) Stats {
	var st Stats
	var reaped, failed atomic.Int64
	sem := make(chan struct{}, p.Concurrency)
	var wg sync.WaitGroup
	var interval time.Duration
	if p.Rate > 0 {
		interval = time.Duration(float64(time.Second) / p.Rate)
	}
	next := time.Now()
loop:
	for {
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					break loop
				}
			}
			next = next.Add(interval)
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wait, err := start()
		if err != nil {
			<-sem
			failed.Add(1)
			pause := time.Millisecond
			if !errors.Is(err, syscall.EAGAIN) {
				pause = 10 * time.Millisecond // not the expected pids.max refusal
			}
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				break loop
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			wait()
			reaped.Add(1)
			<-sem
		}()
	}
	wg.Wait()
	st.Ops = reaped.Load()
	st.Failed = failed.Load()
	return st
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

// MemoryBlowup maps and touches chunks at p.RateBytesPerSec (0: as fast as
// it can) up to p.TargetBytes, then keeps re-touching everything so the
// memory stays hot and reclaim has to fight for it. Under memory.max the
// kernel may OOM-kill it; that is an outcome, not an error.
func MemoryBlowup(ctx context.Context, p trial.MemoryBlowupParams, seed uint64) (Stats, error) {
	var st Stats
	var regions []*load.Region
	defer func() {
		for _, r := range regions {
			r.Unmap()
		}
	}()
	val := load.Rand(seed, "memory_blowup").Uint64()
	start := time.Now()
	var mapped int64
	for _, c := range BlowupPlan(p) {
		if ctx.Err() != nil {
			return st, nil
		}
		if p.RateBytesPerSec > 0 {
			due := start.Add(time.Duration(float64(mapped) / float64(p.RateBytesPerSec) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return st, nil
				}
			}
		}
		r, err := load.Map(c)
		if err != nil {
			return st, err
		}
		regions = append(regions, r)
		r.Touch(0, c, val)
		mapped += c
		st.Ops += c >> 20
		st.Peak = mapped
	}
	for ctx.Err() == nil {
		for _, r := range regions {
			if ctx.Err() != nil {
				break
			}
			r.Touch(0, r.Len(), val)
			st.Ops += r.Len() >> 20
		}
		if len(regions) == 0 {
			<-ctx.Done()
		}
	}
	return st, nil
}
