package trace

import (
	"context"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/load"
)

// DefaultLoopsPerMs converts a recorded CPU share into fixed work: load.CPU
// iterations per millisecond of one busy CPU (measured about 435k on the
// development host; near native under TCG). Work is fixed rather than
// timed so interference stretches a step instead of shrinking its work.
const DefaultLoopsPerMs = 400_000

// chunkBytes is the allocation granule when following a memory profile.
const chunkBytes = 1 << 20

// StepWork is one replayed tool call.
type StepWork struct {
	Index int    `json:"index"`
	Tool  string `json:"tool"`
	// Offset is the compressed recorded start, from the session's first
	// call: when the step starts if nothing before it runs late.
	Offset time.Duration `json:"offset"`
	// After lists the earlier steps (by index) that had ended when this
	// one started in the recording: the agent had their results before
	// it issued this call, so the replay waits for them. Steps that were
	// still running when it started are not listed: it overlaps them.
	// Only the steps that ended since the previous step started are
	// listed; earlier ones are waited for through that previous step.
	After   []int         `json:"after,omitempty"`
	Nominal time.Duration `json:"nominal"` // compressed recorded duration
	Segs    []Segment     `json:"segs"`
}

// Segment is one profile point: hold MemBytes, do CPULoops, and take at
// least Dur.
type Segment struct {
	Dur      time.Duration `json:"dur"`
	MemBytes int64         `json:"mem_bytes"`
	CPULoops int64         `json:"cpu_loops"`
}

// Plan turns a trace into step work for the given parameters, in start
// order. CPU share is capped at one CPU because the replayed step runs one
// thread.
//
// The recording samples the whole container, so every call running at a
// sample's time was charged all of it. Replaying each such call with the
// full sample would multiply the session's memory and CPU by the number of
// calls in flight; instead each profile point is split evenly among the
// calls running at that instant, which keeps the session's total what
// the container measured.
func Plan(t *Trace, p trial.TraceParams) []StepWork {
	comp := p.Compress
	if comp < 1 {
		comp = 1
	}
	scale := func(ms int64) time.Duration {
		return time.Duration(float64(ms) * float64(time.Millisecond) / comp)
	}
	steps := t.Steps
	if p.MaxSteps > 0 && len(steps) > p.MaxSteps {
		steps = steps[:p.MaxSteps]
	}
	var out []StepWork
	for i, s := range steps {
		w := StepWork{Index: i, Tool: s.Tool, Offset: scale(s.StartMs), Nominal: scale(s.DurMs)}
		// A step that ended by this start, but after the previous step
		// started, is a direct dependency; one that ended before the
		// previous step started is already waited for by that step.
		for k := range i {
			end := steps[k].StartMs + steps[k].DurMs
			if end <= s.StartMs && (k == i-1 || end > steps[i-1].StartMs) {
				w.After = append(w.After, k)
			}
		}
		seg := w.Nominal / time.Duration(len(s.MemMB))
		for k := range s.MemMB {
			// the profile point's recorded time: the middle of its share
			// of the call
			at := float64(s.StartMs) + (float64(k)+0.5)*float64(s.DurMs)/float64(len(s.MemMB))
			n := float64(inFlight(t.Steps, i, at))
			duty := min(s.CPUPct[k]/100/n, 1)
			w.Segs = append(w.Segs, Segment{
				Dur:      seg,
				MemBytes: int64(s.MemMB[k] / n * 1e6 * p.MemScale),
				CPULoops: int64(duty * float64(seg) / float64(time.Millisecond) * DefaultLoopsPerMs),
			})
		}
		out = append(out, w)
	}
	return out
}

// inFlight counts the calls running at recorded time at (ms), step self
// among them.
func inFlight(steps []Step, self int, at float64) int {
	n := 1
	for j, o := range steps {
		if j != self && float64(o.StartMs) <= at && at < float64(o.StartMs+o.DurMs) {
			n++
		}
	}
	return n
}

// Nominal is the compressed recorded makespan of the steps: from the first
// step's start to the latest end among them.
func Nominal(ws []StepWork) time.Duration {
	var d time.Duration
	for _, w := range ws {
		d = max(d, w.Offset+w.Nominal)
	}
	return d
}

// Due says when step j may start, given when the steps before it actually
// started and ended (zero: not yet). Step 0 starts at the session's start.
// Every later step keeps its recorded distance behind the step started
// just before it, and its recorded think time after each step in After,
// counted from when that step actually ended: a late step delays the
// steps that waited for it in the recording, and only those. ok is false
// while a step in After has not ended.
func Due(ws []StepWork, j int, session time.Time, started, ended []time.Time) (due time.Time, ok bool) {
	if j == 0 {
		return session, true
	}
	prev := ws[j-1]
	if started[j-1].IsZero() {
		return time.Time{}, false
	}
	due = started[j-1].Add(ws[j].Offset - prev.Offset)
	for _, k := range ws[j].After {
		if ended[k].IsZero() {
			return time.Time{}, false
		}
		think := max(ws[j].Offset-ws[k].Offset-ws[k].Nominal, 0)
		if d := ended[k].Add(think); d.After(due) {
			due = d
		}
	}
	return due, true
}

// Span is when one replayed step ran.
type Span struct {
	Start, End time.Time
}

// Simulate is the replay schedule when step i takes took(i): the start and
// end of every step, by the same rule as Replay. With took(i) equal to
// each step's Nominal it reproduces the recorded (compressed) offsets.
func Simulate(ws []StepWork, session time.Time, took func(i int) time.Duration) []Span {
	started := make([]time.Time, len(ws))
	ended := make([]time.Time, len(ws))
	for j := range ws {
		// Steps start in index order and every step a later one waits
		// for has a lower index, so one pass settles the schedule.
		due, ok := Due(ws, j, session, started, ended)
		if !ok {
			panic("trace: Simulate: a step waits for a later one")
		}
		started[j], ended[j] = due, due.Add(took(j))
	}
	out := make([]Span, len(ws))
	for i := range ws {
		out[i] = Span{started[i], ended[i]}
	}
	return out
}

// StepFunc runs one step to completion. It returns when the step's own
// work began (after any setup), which is where its latency counts from.
type StepFunc func(ctx context.Context, w StepWork) (began time.Time, err error)

// StepResult is one replayed step's outcome.
type StepResult struct {
	Index int
	// Due is when the schedule released the step; Began when its work
	// started; Done when it ended.
	Due, Began, Done time.Time
	Err              error
}

// Replay runs the steps as Due schedules them, each through run in its own
// goroutine, so steps that overlapped in the recording overlap here. A
// step due at or after deadline is not started, nor is any after it; ctx
// ending stops starting steps. Replay returns once every started step has
// ended; done is called for each as it ends, from Replay's goroutine, so
// it needs no locking.
func Replay(ctx context.Context, ws []StepWork, session, deadline time.Time, run StepFunc, done func(StepResult)) []StepResult {
	started := make([]time.Time, len(ws))
	ended := make([]time.Time, len(ws))
	finished := make(chan StepResult, len(ws))
	var out []StepResult
	running := 0
	collect := func(r StepResult) {
		ended[r.Index] = r.Done
		running--
		out = append(out, r)
		if done != nil {
			done(r)
		}
	}
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
launch:
	for j := 0; j < len(ws) && ctx.Err() == nil; {
		due, ok := Due(ws, j, session, started, ended)
		if !ok {
			// a step this one waits for is still running
			select {
			case r := <-finished:
				collect(r)
			case <-ctx.Done():
				break launch
			}
			continue
		}
		if !due.Before(deadline) {
			break
		}
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case r := <-finished:
				timer.Stop()
				collect(r)
				continue
			case <-ctx.Done():
				break launch
			}
		}
		// The schedule, not the driver's wake-up, is what later steps
		// keep their distance from, so timer lateness does not add up.
		started[j] = due
		running++
		go func(w StepWork, due time.Time) {
			began, err := run(ctx, w)
			finished <- StepResult{Index: w.Index, Due: due, Began: began, Done: time.Now(), Err: err}
		}(ws[j], due)
		j++
	}
	for running > 0 {
		collect(<-finished)
	}
	return out
}

// RunStep executes one step in the current process: for each segment grow
// or shrink the mapped memory to its target (touching new pages), do its
// CPU work, then idle out the rest of the segment's nominal time. Idle time
// is not made up when a segment runs late.
func RunStep(ctx context.Context, w StepWork, seed uint64) error {
	var chunks []*load.Region
	defer func() {
		for _, c := range chunks {
			c.Unmap()
		}
	}()
	val := load.Rand(seed, "trace.step").Uint64()
	start := time.Now()
	due := start
	for _, s := range w.Segs {
		due = due.Add(s.Dur)
		want := (s.MemBytes + chunkBytes - 1) / chunkBytes
		for int64(len(chunks)) < want {
			r, err := load.Map(chunkBytes)
			if err != nil {
				return err
			}
			r.Touch(0, chunkBytes, val)
			chunks = append(chunks, r)
		}
		for int64(len(chunks)) > want {
			chunks[len(chunks)-1].Unmap()
			chunks = chunks[:len(chunks)-1]
		}
		load.Sink += load.CPU(s.CPULoops)
		if d := time.Until(due); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}
