package victim

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/latency"
	"github.com/agentcgroup/agentcgroup/workloads/load"
)

// Child is one short process of a tool burst (think: one compiler or test
// process).
type Child struct {
	CPULoops   int64
	AllocBytes int64
	Seed       uint64
}

// BurstPlan returns step s's children. Each child's work varies between
// 0.5x and 1.5x of the mean, as files in a build do, fixed by the seed and
// the step index.
func BurstPlan(p trial.ToolBurstParams, seed uint64, step int) []Child {
	r := load.Rand(seed, fmt.Sprintf("tool_burst.step.%d", step))
	out := make([]Child, p.Children)
	for i := range out {
		f := 0.5 + r.Float64()
		out[i] = Child{
			CPULoops:   int64(float64(p.CPULoops) * f),
			AllocBytes: int64(float64(p.AllocBytes) * f),
			Seed:       r.Uint64(),
		}
	}
	return out
}

// Spawner runs one child to completion (a separate process in production).
type Spawner func(ctx context.Context, c Child) error

// RunToolBurst runs steps from s.Start: every p.Period (open loop), or back
// to back when Period is 0. Latency is the step's completion time measured
// from its intended start. A step with a failed child counts as failed.
func RunToolBurst(ctx context.Context, p trial.ToolBurstParams, seed uint64, s Schedule, clk Clock, rec *latency.Recorder, spawn Spawner) error {
	end := s.Start.Add(s.Duration)
	next := s.Start
	for step := 0; ; step++ {
		if !next.Before(end) {
			return nil
		}
		if err := clk.SleepUntil(ctx, next); err != nil {
			return nil
		}
		intended := next
		if p.Period <= 0 {
			intended = clk.Now() // closed loop: nothing is queued behind a step
		}
		err := runStep(ctx, p.Parallel, BurstPlan(p, seed, step), spawn)
		if ctx.Err() != nil {
			return nil // interrupted mid-step: neither success nor failure
		}
		if err != nil {
			rec.Fail()
		} else {
			rec.Record(intended, clk.Now())
		}
		if p.Period > 0 {
			next = s.Start.Add(time.Duration(step+1) * p.Period.D())
		} else {
			next = clk.Now()
		}
	}
}

func runStep(ctx context.Context, parallel int, children []Child, spawn Spawner) error {
	if parallel < 1 {
		parallel = 1
	}
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, c := range children {
		sem <- struct{}{}
		wg.Add(1)
		go func(c Child) {
			defer func() { <-sem; wg.Done() }()
			if err := spawn(ctx, c); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}(c)
	}
	wg.Wait()
	return first
}

// RunChild is the body of a child process: allocate and touch, compute,
// free.
func RunChild(c Child) error {
	r, err := load.Map(c.AllocBytes)
	if err != nil {
		return err
	}
	r.Touch(0, r.Len(), c.Seed)
	load.Sink += load.CPU(c.CPULoops)
	return r.Unmap()
}
