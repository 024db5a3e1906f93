package trace

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/load"
)

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
	// Expect is what the recording says the step uses, scaled; the
	// driver compares it with what the step used (the step process does
	// not need it).
	Expect Expected `json:"-"`
}

// Segment is one profile point: hold MemBytes, spend CPU of CPU time on
// up to Threads CPUs at once, and take at least Dur.
type Segment struct {
	Dur      time.Duration `json:"dur"`
	MemBytes int64         `json:"mem_bytes"`
	CPU      time.Duration `json:"cpu"`
	// Threads is the recorded CPU share rounded up to whole CPUs: a
	// share above one CPU is spent by as many threads.
	Threads int `json:"threads,omitempty"`
}

// Plan turns a trace into step work for the given parameters, in start
// order.
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
		var peak, cpuMs float64
		for k := range s.MemMB {
			// the profile point's recorded time: the middle of its share
			// of the call
			at := float64(s.StartMs) + (float64(k)+0.5)*float64(s.DurMs)/float64(len(s.MemMB))
			n := float64(inFlight(t.Steps, i, at))
			duty := s.CPUPct[k] / 100 / n
			peak = max(peak, s.MemMB[k]/n*1e6*p.MemScale)
			cpuMs += duty * float64(s.DurMs) / float64(len(s.MemMB)) / comp
			w.Segs = append(w.Segs, Segment{
				Dur:      seg,
				MemBytes: int64(s.MemMB[k] / n * 1e6 * p.MemScale),
				CPU:      time.Duration(duty * float64(seg)),
				Threads:  max(int(math.Ceil(duty)), 1),
			})
		}
		// Validate guarantees every step both profiles, so both values
		// are always recorded.
		cpuUsec := cpuMs * 1000
		w.Expect = Expected{PeakBytes: &peak, CPUUsec: &cpuUsec}
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

// StepReport is what a step process tells its driver when it ends.
type StepReport struct {
	// OwnBytes is the memory the process held before it allocated any
	// (its runtime and what it had faulted in), which its memory profile
	// counts towards.
	OwnBytes int64 `json:"own_bytes"`
	// PeakBytes is the most it held by its own count: OwnBytes and
	// what it mapped.
	PeakBytes int64 `json:"peak_bytes"`
	// Spun is the CPU time it spun to meet its budget. The rest of what
	// it used, its start and exit and its page faults, is the replay's
	// own cost.
	Spun time.Duration `json:"spun"`
}

// RunStep executes one step in the current process: for each segment grow
// or shrink the mapped memory to its target (touching new pages), spend
// its CPU time, then idle out the rest of the segment's nominal time. Idle
// time is not made up when a segment runs late.
//
// The recorded memory and CPU of a call include the tool's own process,
// so the step's do too. ownBytes, what the process held before the step
// began, counts towards every memory target: the step maps only the rest.
// CPU is spent to a budget of the process's CPU time counted from its
// start, so its start and its page faults count towards it. The budget is
// CPU time rather than a fixed number of loop iterations because the
// recording measured CPU time, and under emulation the loop's speed
// follows the host's load. Interference that takes CPU away from the step
// (other tasks, a cpu.max quota) still stretches it, since only CPU time
// it received counts; kernel time it spends itself, such as direct
// reclaim, uses up its budget instead.
func RunStep(ctx context.Context, w StepWork, seed uint64, ownBytes int64) (StepReport, error) {
	rep := StepReport{OwnBytes: ownBytes, PeakBytes: ownBytes}
	var mem held
	defer mem.resize(0, 0)
	val := load.Rand(seed, "trace.step").Uint64()
	start := time.Now()
	due := start
	var budget time.Duration
	for _, s := range w.Segs {
		due = due.Add(s.Dur)
		if err := mem.resize(toMap(s.MemBytes, ownBytes), val); err != nil {
			return rep, err
		}
		rep.PeakBytes = max(rep.PeakBytes, ownBytes+mem.bytes)
		budget += s.CPU
		spun, err := spendCPU(ctx, budget, s.Threads)
		rep.Spun += spun
		if err != nil {
			return rep, err
		}
		if d := time.Until(due); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return rep, ctx.Err()
			}
		}
	}
	return rep, nil
}

// toMap is what a step maps to hold target bytes when its process holds
// own already: the rest, to the page.
func toMap(target, own int64) int64 {
	return (max(target-own, 0) + load.PageSize - 1) / load.PageSize * load.PageSize
}

// held is a step's mapped memory, in chunks of up to chunkBytes, the last
// one smaller when the size is not a whole number of chunks.
type held struct {
	chunks []*load.Region
	bytes  int64
}

// resize maps and touches, or unmaps, memory until exactly want bytes
// (a whole number of pages) are held.
func (h *held) resize(want int64, val uint64) error {
	for h.bytes > want {
		last := h.chunks[len(h.chunks)-1]
		h.chunks = h.chunks[:len(h.chunks)-1]
		h.bytes -= last.Len()
		last.Unmap()
	}
	for h.bytes < want {
		r, err := load.Map(min(chunkBytes, want-h.bytes))
		if err != nil {
			return err
		}
		r.Touch(0, r.Len(), val)
		h.chunks = append(h.chunks, r)
		h.bytes += r.Len()
	}
	return nil
}

// spinLoops is the load.CPU work between two looks at the process's CPU
// time: tens of microseconds, so a segment overshoots its budget by about
// that while the look's system call costs a few percent.
const spinLoops = 20_000

// processCPU is the CPU time the process has used since it started, all
// its threads together.
func processCPU() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		return 0, fmt.Errorf("process CPU time: %w", err)
	}
	return time.Duration(ts.Nano()), nil
}

// spendCPU spins on threads goroutines until the process has used until
// of CPU time, and returns the CPU time that took.
func spendCPU(ctx context.Context, until time.Duration, threads int) (time.Duration, error) {
	before, err := processCPU()
	if err != nil || before >= until {
		return 0, err
	}
	var wg sync.WaitGroup
	sinks := make([]uint64, max(threads, 1))
	errs := make([]error, len(sinks))
	for i := range sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				used, err := processCPU()
				if err != nil {
					errs[i] = err
					return
				}
				if used >= until {
					return
				}
				sinks[i] += load.CPU(spinLoops)
			}
		}()
	}
	wg.Wait()
	after, err := processCPU()
	for i := range sinks {
		load.Sink += sinks[i]
		if err == nil {
			err = errs[i]
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	return max(after-before, 0), err
}

// OwnMemory is what this process holds now, as its step will be measured:
// the memory.current of its cgroup dir, or, without one, its resident
// anonymous memory (the binary's own pages are shared, not the step's).
func OwnMemory(cgroupDir string) (int64, error) {
	if cgroupDir != "" {
		b, err := os.ReadFile(filepath.Join(cgroupDir, "memory.current"))
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	// size resident shared ...: resident less its file-backed part
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return 0, fmt.Errorf("/proc/self/statm: %q", b)
	}
	res, err1 := strconv.ParseInt(f[1], 10, 64)
	shared, err2 := strconv.ParseInt(f[2], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/self/statm: %v", err)
	}
	return (res - shared) * int64(os.Getpagesize()), nil
}
