package victim

import (
	"context"
	"fmt"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/latency"
	"github.com/agentcgroup/agentcgroup/workloads/load"
)

// Request is one interactive request's work, fixed by the seed.
type Request struct {
	CPULoops    int64
	TouchOffset int64
	TouchBytes  int64
	Value       uint64 // what is written, so pages are not same-filled
}

// InteractivePlan returns the first n requests for (params, seed). The CPU
// unit is fixed; only where the memory touch lands varies, so every
// request costs the same and latency differences come from interference.
func InteractivePlan(p trial.InteractiveParams, seed uint64, n int) []Request {
	r := load.Rand(seed, "interactive.touch")
	out := make([]Request, n)
	for i := range out {
		var off int64
		if ws := int64(p.WorkingSetBytes); ws > 0 {
			off = r.Int64N(ws) &^ (load.PageSize - 1)
		}
		out[i] = Request{CPULoops: p.CPULoops, TouchOffset: off, TouchBytes: int64(p.TouchBytes), Value: r.Uint64()}
	}
	return out
}

// Schedule is the open-loop timing of a measured run.
type Schedule struct {
	Start    time.Time     // first intended start; the recorder's base
	Duration time.Duration // no request is scheduled at or after Start+Duration
}

// RunInteractive issues one request every p.Period from s.Start, doing
// do(req) for each, and records latency from the request's intended start.
// A request that is late runs at once (never skipped), so a stall shows up
// in every request queued behind it.
func RunInteractive(ctx context.Context, p trial.InteractiveParams, seed uint64, s Schedule, clk Clock, rec *latency.Recorder, do func(Request)) error {
	if p.Period <= 0 {
		return fmt.Errorf("interactive: period must be > 0")
	}
	n := int(s.Duration / p.Period.D())
	plan := InteractivePlan(p, seed, n)
	for i, req := range plan {
		intended := s.Start.Add(time.Duration(i) * p.Period.D())
		if err := clk.SleepUntil(ctx, intended); err != nil {
			return nil // stopped: what was recorded stands
		}
		do(req)
		rec.Record(intended, clk.Now())
	}
	return nil
}

// InteractiveWorker does requests against a working set mapped once.
type InteractiveWorker struct {
	ws *load.Region
}

// NewInteractiveWorker maps and fully touches the working set, so the
// measured phase starts with it resident.
func NewInteractiveWorker(p trial.InteractiveParams) (*InteractiveWorker, error) {
	ws, err := load.Map(int64(p.WorkingSetBytes))
	if err != nil {
		return nil, err
	}
	ws.Touch(0, ws.Len(), 0x5a5a)
	return &InteractiveWorker{ws: ws}, nil
}

// Do performs one request.
func (w *InteractiveWorker) Do(r Request) {
	load.Sink += load.CPU(r.CPULoops)
	w.ws.Touch(r.TouchOffset, r.TouchBytes, r.Value)
}

// Close unmaps the working set.
func (w *InteractiveWorker) Close() error { return w.ws.Unmap() }
