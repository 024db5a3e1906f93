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

// RunInteractive issues one request every p.Period from s.Start (plus
// p.Idle, during which it does nothing), doing do(req) for each, and
// records latency from the request's intended start. A request that is
// late runs at once (never skipped), so a stall shows up in every request
// queued behind it.
func RunInteractive(ctx context.Context, p trial.InteractiveParams, seed uint64, s Schedule, clk Clock, rec *latency.Recorder, do func(Request)) error {
	if p.Period <= 0 {
		return fmt.Errorf("interactive: period must be > 0")
	}
	first := s.Start.Add(p.Idle.D())
	n := int((s.Duration - p.Idle.D()) / p.Period.D())
	plan := InteractivePlan(p, seed, max(n, 0))
	for i, req := range plan {
		intended := first.Add(time.Duration(i) * p.Period.D())
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
	ws    *load.Region
	probe int64
	alloc *latency.Recorder
}

// NewInteractiveWorker maps and fully touches the working set, so the
// measured phase starts with it resident.
func NewInteractiveWorker(p trial.InteractiveParams) (*InteractiveWorker, error) {
	ws, err := load.Map(int64(p.WorkingSetBytes))
	if err != nil {
		return nil, err
	}
	ws.Touch(0, ws.Len(), 0x5a5a)
	return &InteractiveWorker{ws: ws, probe: int64(p.AllocProbeBytes)}, nil
}

// RecordAllocs sends the allocation probe's latencies (p.AllocProbeBytes
// > 0) to rec; without a recorder no probe runs.
func (w *InteractiveWorker) RecordAllocs(rec *latency.Recorder) { w.alloc = rec }

// Do performs one request.
func (w *InteractiveWorker) Do(r Request) {
	load.Sink += load.CPU(r.CPULoops)
	w.ws.Touch(r.TouchOffset, r.TouchBytes, r.Value)
	if w.probe > 0 && w.alloc != nil {
		w.probeAlloc(r.Value)
	}
}

// probeAlloc times mapping and faulting in fresh memory, what a step waits
// for when it needs memory: page allocation, and under pressure the reclaim
// and memory.high throttling charged to it. A failed map counts as failed.
func (w *InteractiveWorker) probeAlloc(val uint64) {
	began := time.Now()
	m, err := load.Map(w.probe)
	if err != nil {
		w.alloc.Fail()
		return
	}
	m.Touch(0, m.Len(), val)
	w.alloc.Record(began, time.Now())
	m.Unmap()
}

// Close unmaps the working set.
func (w *InteractiveWorker) Close() error { return w.ws.Unmap() }
