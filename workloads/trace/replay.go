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
	Index   int           `json:"index"`
	Tool    string        `json:"tool"`
	Gap     time.Duration `json:"gap"`     // idle time before it (compressed think time)
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

// Plan turns a trace into step work for the given parameters. CPU share is
// capped at one CPU because the replayed step runs one thread.
func Plan(t *Trace, p trial.TraceParams) []StepWork {
	comp := p.Compress
	if comp < 1 {
		comp = 1
	}
	scale := func(ms int64) time.Duration {
		return time.Duration(float64(ms) * float64(time.Millisecond) / comp)
	}
	var out []StepWork
	prevEnd := int64(0)
	for i, s := range t.Steps {
		if p.MaxSteps > 0 && i >= p.MaxSteps {
			break
		}
		gap := s.StartMs - prevEnd
		if gap < 0 || i == 0 {
			gap = 0
		}
		prevEnd = max(prevEnd, s.StartMs+s.DurMs)
		w := StepWork{Index: i, Tool: s.Tool, Gap: scale(gap), Nominal: scale(s.DurMs)}
		seg := w.Nominal / time.Duration(len(s.MemMB))
		for k := range s.MemMB {
			duty := min(s.CPUPct[k]/100, 1)
			w.Segs = append(w.Segs, Segment{
				Dur:      seg,
				MemBytes: int64(s.MemMB[k] * 1e6 * p.MemScale),
				CPULoops: int64(duty * float64(seg) / float64(time.Millisecond) * DefaultLoopsPerMs),
			})
		}
		out = append(out, w)
	}
	return out
}

// Nominal is the sum of the steps' compressed durations.
func Nominal(ws []StepWork) time.Duration {
	var d time.Duration
	for _, w := range ws {
		d += w.Nominal
	}
	return d
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
