package victim

import (
	"bytes"
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/latency"
)

// fakeClock advances only when work is done or a sleep is requested.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.t) {
		c.t = t
	}
	return ctx.Err()
}
func (c *fakeClock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

var t0 = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

func merged(t *testing.T, buf *bytes.Buffer) *hdrhistogram.Histogram {
	t.Helper()
	rd := hdrhistogram.NewHistogramLogReader(bytes.NewReader(buf.Bytes()))
	h := trial.NewLatencyHistogram()
	for {
		x, err := rd.NextIntervalHistogram()
		if err != nil {
			t.Fatal(err)
		}
		if x == nil {
			return h
		}
		h.Merge(x)
	}
}

func TestInteractivePlanDeterministic(t *testing.T) {
	p := trial.InteractiveParams{Period: trial.Duration(time.Millisecond), CPULoops: 10, TouchBytes: 4096, WorkingSetBytes: 1 << 20}
	a, b := InteractivePlan(p, 7, 50), InteractivePlan(p, 7, 50)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed gave different plans")
	}
	if reflect.DeepEqual(a, InteractivePlan(p, 8, 50)) {
		t.Fatal("different seeds gave the same plan")
	}
	for _, r := range a {
		if r.CPULoops != 10 || r.TouchOffset < 0 || r.TouchOffset >= 1<<20 || r.TouchOffset%4096 != 0 {
			t.Fatalf("bad request %+v", r)
		}
	}
}

// A single 100 ms stall in a 10 ms open loop must show in every request
// queued behind it, not just in the one that stalled.
func TestInteractiveCountsQueuedRequests(t *testing.T) {
	clk := &fakeClock{t: t0}
	var buf bytes.Buffer
	rec, err := latency.New(&buf, t0, time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	p := trial.InteractiveParams{Period: trial.Duration(10 * time.Millisecond), CPULoops: 1}
	n := 0
	do := func(Request) {
		n++
		if n == 11 {
			clk.advance(100 * time.Millisecond)
		} else {
			clk.advance(time.Millisecond)
		}
	}
	if err := RunInteractive(context.Background(), p, 1, Schedule{Start: t0, Duration: time.Second}, clk, rec, do); err != nil {
		t.Fatal(err)
	}
	rec.Close(clk.Now())
	if n != 100 {
		t.Fatalf("issued %d requests in 1s at 10ms, want 100", n)
	}
	h := merged(t, &buf)
	if h.TotalCount() != 100 {
		t.Fatalf("recorded %d", h.TotalCount())
	}
	// The stalled request took 100 ms; the ~9 behind it waited 91, 82, ...
	// ms. Measuring from the actual start would show one slow request.
	var over10ms int64
	for _, b := range h.Distribution() {
		if b.From >= 10_000 {
			over10ms += b.Count
		}
	}
	if over10ms < 9 || over10ms > 11 {
		t.Errorf("%d requests over 10 ms, want ~10 (the stall plus those queued behind it)", over10ms)
	}
	if mx := h.Max(); mx < 100_000 || mx > 101_500 {
		t.Errorf("max %d us, want ~101000", mx)
	}
	if p50 := h.ValueAtQuantile(50); p50 < 1000 || p50 > 1010 {
		t.Errorf("p50 %d us, want ~1000 (the unit of work)", p50)
	}
}

// With idle, the first request is due idle after the start and the rest
// follow every period: the requests fit in what is left of the phase.
func TestInteractiveIdleDelaysFirstRequest(t *testing.T) {
	clk := &fakeClock{t: t0}
	var buf bytes.Buffer
	rec, err := latency.New(&buf, t0, time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	p := trial.InteractiveParams{Period: trial.Duration(10 * time.Millisecond), Idle: trial.Duration(400 * time.Millisecond)}
	var starts []time.Time
	do := func(Request) {
		starts = append(starts, clk.Now())
		clk.advance(time.Millisecond)
	}
	if err := RunInteractive(context.Background(), p, 1, Schedule{Start: t0, Duration: time.Second}, clk, rec, do); err != nil {
		t.Fatal(err)
	}
	if len(starts) != 60 {
		t.Fatalf("%d requests in the 600 ms after a 400 ms idle at 10 ms, want 60", len(starts))
	}
	if d := starts[0].Sub(t0); d != 400*time.Millisecond {
		t.Errorf("first request at +%v, want +400ms", d)
	}
	if d := starts[59].Sub(t0); d != 990*time.Millisecond {
		t.Errorf("last request at +%v, want +990ms", d)
	}
}

// The allocation probe maps, faults in and unmaps its size on every
// request and records each into its own recorder, apart from the
// request's latency.
func TestInteractiveAllocProbe(t *testing.T) {
	p := trial.InteractiveParams{Period: trial.Duration(time.Millisecond), TouchBytes: 4096, WorkingSetBytes: 1 << 20, AllocProbeBytes: 256 << 10}
	w, err := NewInteractiveWorker(p)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Do(Request{TouchBytes: 4096, Value: 1}) // no recorder: no probe, no panic
	var buf bytes.Buffer
	rec, err := latency.New(&buf, time.Now(), time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	w.RecordAllocs(rec)
	for i := 0; i < 5; i++ {
		w.Do(Request{TouchBytes: 4096, Value: uint64(i)})
	}
	if err := rec.Close(time.Now()); err != nil {
		t.Fatal(err)
	}
	if rec.Count() != 5 || rec.Failed() != 0 {
		t.Errorf("probe recorded %d, failed %d; want 5 and 0", rec.Count(), rec.Failed())
	}
	if h := merged(t, &buf); h.TotalCount() != 5 {
		t.Errorf("alloc log holds %d values", h.TotalCount())
	}
}

func TestBurstPlanDeterministic(t *testing.T) {
	p := trial.ToolBurstParams{Children: 6, Parallel: 2, CPULoops: 1000, AllocBytes: 1 << 20}
	a := BurstPlan(p, 3, 0)
	if !reflect.DeepEqual(a, BurstPlan(p, 3, 0)) {
		t.Fatal("same seed and step gave different children")
	}
	if reflect.DeepEqual(a, BurstPlan(p, 3, 1)) || reflect.DeepEqual(a, BurstPlan(p, 4, 0)) {
		t.Fatal("steps or seeds do not vary the work")
	}
	for _, c := range a {
		if c.CPULoops < 500 || c.CPULoops > 1500 || c.AllocBytes < 1<<19 || c.AllocBytes > 3<<19 {
			t.Fatalf("child outside 0.5x..1.5x: %+v", c)
		}
	}
}

// Open-loop tool bursts: a slow step delays the next step's start, and that
// wait counts toward the next step's latency.
func TestToolBurstOpenLoop(t *testing.T) {
	clk := &fakeClock{t: t0}
	var buf bytes.Buffer
	rec, _ := latency.New(&buf, t0, time.Second, "")
	p := trial.ToolBurstParams{Children: 4, Parallel: 4, CPULoops: 1, Period: trial.Duration(100 * time.Millisecond)}
	var mu sync.Mutex
	steps := 0
	spawn := func(ctx context.Context, c Child) error {
		mu.Lock()
		defer mu.Unlock()
		steps++
		if steps <= 4 { // first step: 4 children x 75 ms = 300 ms in total
			clk.advance(75 * time.Millisecond)
		} else {
			clk.advance(5 * time.Millisecond)
		}
		return nil
	}
	RunToolBurst(context.Background(), p, 1, Schedule{Start: t0, Duration: 500 * time.Millisecond}, clk, rec, spawn)
	rec.Close(clk.Now())
	h := merged(t, &buf)
	if h.TotalCount() != 5 {
		t.Fatalf("%d steps, want 5", h.TotalCount())
	}
	// step 0: 300 ms; step 1 intended at 100, starts 300, ends 320 -> 220
	// ms; step 2 intended 200, ends 340 -> 140; step 3: 300->360: 60; step
	// 4: 400 -> 420: 20.
	if mx := h.Max(); mx < 299_000 || mx > 301_000 {
		t.Errorf("max %d, want ~300000", mx)
	}
	var over100 int64
	for _, b := range h.Distribution() {
		if b.From >= 100_000 {
			over100 += b.Count
		}
	}
	if over100 != 3 {
		t.Errorf("%d steps over 100 ms, want 3 (the slow one and two queued behind it)", over100)
	}
}

func TestToolBurstCountsFailures(t *testing.T) {
	clk := &fakeClock{t: t0}
	var buf bytes.Buffer
	rec, _ := latency.New(&buf, t0, time.Second, "")
	p := trial.ToolBurstParams{Children: 2, Parallel: 1, Period: trial.Duration(100 * time.Millisecond)}
	i := 0
	spawn := func(ctx context.Context, c Child) error {
		i++
		clk.advance(time.Millisecond)
		if i == 3 {
			return context.DeadlineExceeded
		}
		return nil
	}
	RunToolBurst(context.Background(), p, 1, Schedule{Start: t0, Duration: 300 * time.Millisecond}, clk, rec, spawn)
	if rec.Count() != 2 || rec.Failed() != 1 {
		t.Errorf("count %d failed %d, want 2 and 1", rec.Count(), rec.Failed())
	}
}

func TestRunChildTouchesMemory(t *testing.T) {
	if err := RunChild(Child{CPULoops: 1000, AllocBytes: 1 << 20, Seed: 5}); err != nil {
		t.Fatal(err)
	}
}
