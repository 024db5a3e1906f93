package trace

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/load"
)

// What a step is expected to use comes from its recording, split among
// the calls in flight as Plan splits it, scaled by mem_scale and compress,
// and not capped at the one CPU a single spinner could give.
func TestPlanExpected(t *testing.T) {
	tr := &Trace{Version: FormatVersion, Name: "x", Steps: []Step{
		// alone for its first half, beside the Bash call for its second
		{Tool: "Task", StartMs: 0, DurMs: 1000, MemMB: []float64{100, 300}, CPUPct: []float64{50, 100}},
		{Tool: "Bash", StartMs: 500, DurMs: 500, MemMB: []float64{300}, CPUPct: []float64{100}},
		{Tool: "Bash", StartMs: 2000, DurMs: 2000, MemMB: []float64{40, 80}, CPUPct: []float64{150, 250}},
	}}
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
	w := Plan(tr, trial.TraceParams{Compress: 4, MemScale: 0.5})
	for i, want := range []struct{ mem, cpuMs float64 }{
		// max(100, 300/2) MB * 0.5; (0.5*500 + 1.0/2*500) ms / 4
		{75e6, 125},
		// 300/2 MB * 0.5; 1.0/2*500 ms / 4
		{75e6, 62.5},
		// 80 MB * 0.5; (1.5 + 2.5) * 1000 ms / 4
		{40e6, 1000},
	} {
		e := w[i].Expect
		if e.PeakBytes == nil || e.CPUUsec == nil {
			t.Fatalf("step %d: %+v, want both recorded", i, e)
		}
		if math.Abs(*e.PeakBytes-want.mem) > 1 || math.Abs(*e.CPUUsec-want.cpuMs*1000) > 1e-6 {
			t.Errorf("step %d: expected %.0f bytes %.1f us, want %.0f bytes %.1f us", i, *e.PeakBytes, *e.CPUUsec, want.mem, want.cpuMs*1000)
		}
	}
}

func TestCheck(t *testing.T) {
	v := func(x float64) *float64 { return &x }
	e := Expected{PeakBytes: v(100 << 20), CPUUsec: v(5e6)}
	rep := &StepReport{OwnBytes: 5 << 20, Spun: 3 * time.Second}
	f := Check(e, Usage{Source: trial.FidelityCgroup, PeakBytes: v(104 << 20), CPUUsec: v(6e6), Report: rep})
	if f.Source != trial.FidelityCgroup || f.Mem.Verdict != trial.FidelityWithin || f.CPU.Verdict != trial.FidelityOff || f.CPU.Ratio != 1.2 {
		t.Errorf("%+v", f)
	}
	// the floors are the step's own costs: the memory it held before
	// allocating, and the CPU it did not spin
	if f.Mem.Floor != 5<<20 || f.CPU.Floor != 3e6 {
		t.Errorf("floors %v bytes, %v us; want 5 MiB, 6-3 s", f.Mem.Floor, f.CPU.Floor)
	}
	// below them nothing is judged: a step whose own process costs
	// more than its recording asks for cannot show its recording
	small := Expected{PeakBytes: v(4 << 20), CPUUsec: v(1.5e6)}
	f = Check(small, Usage{PeakBytes: v(5 << 20), CPUUsec: v(2e6), Report: &StepReport{OwnBytes: 5 << 20, Spun: 0}})
	if f.Mem.Verdict != trial.FidelityTooSmall || f.CPU.Verdict != trial.FidelityTooSmall {
		t.Errorf("below the floors: %+v", f)
	}
	// and a step needs MinCheckCPU for its exit not to decide the verdict
	f = Check(Expected{CPUUsec: v(float64(MinCheckCPU.Microseconds()) - 1)}, Usage{CPUUsec: v(1e6), Report: &StepReport{Spun: 900 * time.Millisecond}})
	if f.CPU.Verdict != trial.FidelityTooSmall || f.CPU.Floor != float64(MinCheckCPU.Microseconds()) {
		t.Errorf("below MinCheckCPU: %+v", f.CPU)
	}
	// a step that reported nothing (killed) is judged on what it used
	f = Check(e, Usage{PeakBytes: v(20 << 20), CPUUsec: v(1e6)})
	if f.Mem.Verdict != trial.FidelityOff || f.CPU.Verdict != trial.FidelityOff {
		t.Errorf("no report: %+v", f)
	}
	// a value missing on either side is said to be missing
	f = Check(Expected{CPUUsec: v(5e6)}, Usage{PeakBytes: v(1 << 20)})
	if f.Mem.Verdict != trial.FidelityNotRecorded || f.CPU.Verdict != trial.FidelityNotMeasured {
		t.Errorf("missing values: %+v", f)
	}
}

// A step spends CPU time to a budget counted in the process's own CPU
// time, on as many threads as its share of CPUs asks for.
func TestSpendCPU(t *testing.T) {
	for _, threads := range []int{1, 2} {
		before, err := processCPU()
		if err != nil {
			t.Fatal(err)
		}
		until := before + 100*time.Millisecond
		spun, err := spendCPU(context.Background(), until, threads)
		if err != nil {
			t.Fatal(err)
		}
		after, _ := processCPU()
		// a look at the clock every spinLoops iterations overshoots by
		// well under a millisecond per thread on any host
		if after < until || after > until+10*time.Millisecond {
			t.Errorf("%d threads: used %v for a 100ms budget", threads, after-before)
		}
		// The process's CPU time also counts the Go runtime's own
		// threads (GC workers, sysmon), a few milliseconds on a loaded
		// host; the spinners' share is the rest.
		if spun < after-before-5*time.Millisecond || spun > after-before {
			t.Errorf("%d threads: reported %v spun of the %v used", threads, spun, after-before)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := spendCPU(ctx, time.Hour, 1); err == nil {
		t.Error("a cancelled step went on spinning or did not say it stopped")
	}
}

// The step's own process counts towards its memory: it maps only what its
// target asks for beyond what the process held before, to the page, and
// holds exactly that.
func TestStepMemory(t *testing.T) {
	for _, c := range []struct{ target, own, want int64 }{
		{8 << 20, 2 << 20, 6 << 20},
		{3<<20 + 1, 2 << 20, 1<<20 + load.PageSize},
		{1 << 20, 2 << 20, 0},
		{0, 0, 0},
	} {
		if got := toMap(c.target, c.own); got != c.want {
			t.Errorf("target %d own %d: maps %d, want %d", c.target, c.own, got, c.want)
		}
	}
	var h held
	for _, want := range []int64{5<<20 + 3*load.PageSize, 2 << 20, 2<<20 + load.PageSize, 0} {
		if err := h.resize(want, 1); err != nil {
			t.Fatal(err)
		}
		sum := int64(0)
		for _, c := range h.chunks {
			sum += c.Len()
		}
		if h.bytes != want || sum != want {
			t.Errorf("resized to %d: holds %d in chunks of %d bytes", want, h.bytes, sum)
		}
	}
}
