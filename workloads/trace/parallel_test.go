package trace

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// parallelCalls is a session with two bursts of parallel calls, listed the
// way tool_calls.json lists them: as they complete. Start order (offsets
// from the earliest call, 01:00:00.500):
//
//	0 Glob B   0    .. 950   } three calls issued together
//	1 Grep C   400  .. 1000  }
//	2 Glob A   500  .. 900   }
//	3 Bash D   1500 .. 2500  after B, C, A returned; overlaps E
//	4 Read E   1600 .. 1700
//	5 Edit F   3000 .. 3100  after D and E returned
const parallelCalls = `[
 {"timestamp": "2026-02-07T01:00:01.000Z", "end_timestamp": "2026-02-07T01:00:01.400Z", "tool": "Glob"},
 {"timestamp": "2026-02-07T01:00:00.500Z", "end_timestamp": "2026-02-07T01:00:01.450Z", "tool": "Glob"},
 {"timestamp": "2026-02-07T01:00:00.900Z", "end_timestamp": "2026-02-07T01:00:01.500Z", "tool": "Grep"},
 {"timestamp": "2026-02-07T01:00:02.100Z", "end_timestamp": "2026-02-07T01:00:02.200Z", "tool": "Read"},
 {"timestamp": "2026-02-07T01:00:02.000Z", "end_timestamp": "2026-02-07T01:00:03.000Z", "tool": "Bash"},
 {"timestamp": "2026-02-07T01:00:03.500Z", "end_timestamp": "2026-02-07T01:00:03.600Z", "tool": "Edit"}
]`

func writeCalls(t *testing.T, calls string) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tool_calls.json"), []byte(calls), 0o644)
	os.WriteFile(filepath.Join(dir, "resources.json"), []byte(samples()), 0o644)
	return dir
}

func parallelTrace(t *testing.T) *Trace {
	t.Helper()
	tr, reordered, err := convert(writeCalls(t, parallelCalls), "par", "test", "GPL-2.0")
	if err != nil {
		t.Fatal(err)
	}
	if reordered != 3 {
		t.Errorf("%d calls listed out of start order, want 3 (B, C after A; D after E)", reordered)
	}
	return tr
}

func TestConvertParallelCallsListedOutOfOrder(t *testing.T) {
	tr := parallelTrace(t)
	type sd struct {
		tool       string
		start, dur int64
	}
	var got []sd
	for _, s := range tr.Steps {
		got = append(got, sd{s.Tool, s.StartMs, s.DurMs})
	}
	want := []sd{{"Glob", 0, 950}, {"Grep", 400, 600}, {"Glob", 500, 400}, {"Bash", 1500, 1000}, {"Read", 1600, 100}, {"Edit", 3000, 100}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("steps (tool, start, dur)\n got  %v\n want %v", got, want)
	}
	c := tr.Concurrency()
	if c != (Concurrency{Overlapping: 5, MaxParallel: 3, SpanMs: 3100}) {
		t.Errorf("concurrency %+v, want 5 overlapping, 3 at once, 3100 ms", c)
	}
}

func TestPlanDependencies(t *testing.T) {
	w := Plan(parallelTrace(t), trial.TraceParams{Compress: 10, MemScale: 1})
	var offsets []time.Duration
	var after [][]int
	for _, s := range w {
		offsets = append(offsets, s.Offset)
		after = append(after, s.After)
	}
	ms := time.Millisecond
	if want := []time.Duration{0, 40 * ms, 50 * ms, 150 * ms, 160 * ms, 300 * ms}; !reflect.DeepEqual(offsets, want) {
		t.Errorf("offsets %v, want %v", offsets, want)
	}
	// D waits for the whole first burst; E overlaps D and waits for the
	// burst only through D's start; F waits for D and E.
	if want := [][]int{nil, nil, nil, {0, 1, 2}, nil, {3, 4}}; !reflect.DeepEqual(after, want) {
		t.Errorf("after %v, want %v", after, want)
	}
	if got := Nominal(w); got != 310*ms {
		t.Errorf("recorded makespan %v, want 310ms", got)
	}
}

func TestSimulateKeepsOverlapAndDependencies(t *testing.T) {
	w := Plan(parallelTrace(t), trial.TraceParams{Compress: 10, MemScale: 1})
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	starts := func(sp []Span) []time.Duration {
		var out []time.Duration
		for _, s := range sp {
			out = append(out, s.Start.Sub(t0))
		}
		return out
	}
	nominal := func(i int) time.Duration { return w[i].Nominal }
	sp := Simulate(w, t0, nominal)
	if want := []time.Duration{0, 40 * ms, 50 * ms, 150 * ms, 160 * ms, 300 * ms}; !reflect.DeepEqual(starts(sp), want) {
		t.Errorf("with recorded durations the replay starts %v, want the recorded offsets %v", starts(sp), want)
	}
	overlap := func(a, b Span) bool { return a.Start.Before(b.End) && b.Start.Before(a.End) }
	if !overlap(sp[0], sp[1]) || !overlap(sp[1], sp[2]) || !overlap(sp[3], sp[4]) {
		t.Errorf("parallel calls do not overlap in the replay: %v", starts(sp))
	}

	// C (step 1) runs 500 ms late: D waited for it in the recording, so D
	// and everything after it shift by the same 500 ms; its siblings do not.
	late := func(k int) func(int) time.Duration {
		return func(i int) time.Duration {
			if i == k {
				return w[i].Nominal + 500*ms
			}
			return w[i].Nominal
		}
	}
	if want := []time.Duration{0, 40 * ms, 50 * ms, 650 * ms, 660 * ms, 800 * ms}; !reflect.DeepEqual(starts(Simulate(w, t0, late(1))), want) {
		t.Errorf("C late: starts %v, want %v", starts(Simulate(w, t0, late(1))), want)
	}
	// D late: E overlapped D, so it starts on time; F waited for D.
	if want := []time.Duration{0, 40 * ms, 50 * ms, 150 * ms, 160 * ms, 800 * ms}; !reflect.DeepEqual(starts(Simulate(w, t0, late(3))), want) {
		t.Errorf("D late: starts %v, want %v", starts(Simulate(w, t0, late(3))), want)
	}
	// E late: only F waits.
	if want := []time.Duration{0, 40 * ms, 50 * ms, 150 * ms, 160 * ms, 800 * ms}; !reflect.DeepEqual(starts(Simulate(w, t0, late(4))), want) {
		t.Errorf("E late: starts %v, want %v", starts(Simulate(w, t0, late(4))), want)
	}
	// Steps taking half their time start no earlier than recorded: think
	// time is kept, and siblings keep their spacing.
	fast := Simulate(w, t0, func(i int) time.Duration { return w[i].Nominal / 2 })
	for i, s := range fast {
		if s.Start.Sub(t0) < w[i].Offset {
			t.Errorf("step %d starts at %v, before its recorded offset %v", i, s.Start.Sub(t0), w[i].Offset)
		}
	}
}

// Replay runs steps concurrently in real time: the first burst overlaps,
// D waits for all of it, E overlaps D, F waits for D and E.
func TestReplayRunsOverlappingStepsConcurrently(t *testing.T) {
	w := Plan(parallelTrace(t), trial.TraceParams{Compress: 2, MemScale: 1})
	var mu sync.Mutex
	running, most := 0, 0
	run := func(ctx context.Context, s StepWork) (time.Time, error) {
		began := time.Now()
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		time.Sleep(s.Nominal)
		mu.Lock()
		running--
		mu.Unlock()
		return began, nil
	}
	start := time.Now().Add(10 * time.Millisecond)
	var order []int
	res := Replay(context.Background(), w, start, start.Add(time.Minute), run, func(r StepResult) { order = append(order, r.Index) })
	if len(res) != len(w) || len(order) != len(w) {
		t.Fatalf("%d results, %d reported, for %d steps", len(res), len(order), len(w))
	}
	by := map[int]StepResult{}
	for _, r := range res {
		if r.Err != nil {
			t.Errorf("step %d: %v", r.Index, r.Err)
		}
		by[r.Index] = r
	}
	if most < 3 {
		t.Errorf("at most %d steps ran at once, want the 3 parallel calls together", most)
	}
	for _, k := range []int{0, 1, 2} {
		if by[3].Began.Before(by[k].Done) {
			t.Errorf("D began %v before step %d ended (%v)", by[3].Began.Sub(start), k, by[k].Done.Sub(start))
		}
	}
	if !by[4].Began.Before(by[3].Done) {
		t.Errorf("E began %v, after D ended (%v): they overlapped in the recording", by[4].Began.Sub(start), by[3].Done.Sub(start))
	}
	for _, k := range []int{3, 4} {
		if by[5].Began.Before(by[k].Done) {
			t.Errorf("F began before step %d ended", k)
		}
	}
	for i, s := range w {
		if d := by[i].Due.Sub(start); d < s.Offset {
			t.Errorf("step %d due at %v, before its recorded offset %v", i, d, s.Offset)
		}
	}
	last := by[5].Done.Sub(start)
	if rec := Nominal(w); last < rec {
		t.Errorf("makespan %v shorter than the recorded %v", last, rec)
	}

	// A deadline before D is due starts the first burst only.
	res = Replay(context.Background(), w, time.Now(), time.Now().Add(700*time.Millisecond), run, nil)
	if len(res) != 3 {
		t.Errorf("deadline at 700ms (D due at 750ms): %d steps started, want 3", len(res))
	}
}

func TestConvertRejectsBrokenCalls(t *testing.T) {
	for _, c := range []struct {
		name, call string
		want       []string
	}{
		{"negative", `{"timestamp": "2026-02-07T01:00:02.000Z", "end_timestamp": "2026-02-07T01:00:01.000Z", "tool": "Bash"}`,
			[]string{"call 1 (Bash)", "negative duration", "1000 ms before", "correct them or remove the call"}},
		{"bad time", `{"timestamp": "yesterday", "end_timestamp": "2026-02-07T01:00:01.000Z", "tool": "Bash"}`,
			[]string{"call 1 (Bash)", `timestamp "yesterday"`, "RFC 3339"}},
		{"bad end", `{"timestamp": "2026-02-07T01:00:01.000Z", "end_timestamp": "01:00:02", "tool": "Read"}`,
			[]string{"call 1 (Read)", `end_timestamp "01:00:02"`}},
		{"no start", `{"end_timestamp": "2026-02-07T01:00:01.000Z", "tool": "Bash"}`,
			[]string{"call 1 (Bash)", "no timestamp", "add it or remove the call"}},
		{"no end", `{"timestamp": "2026-02-07T01:00:01.000Z", "tool": "Bash"}`,
			[]string{"call 1 (Bash)", "no end_timestamp", "remove the call if it never finished"}},
		{"no tool", `{"timestamp": "2026-02-07T01:00:01.000Z", "end_timestamp": "2026-02-07T01:00:01.000Z"}`,
			[]string{"call 1 started", "no tool name"}},
	} {
		dir := writeCalls(t, `[{"timestamp": "2026-02-07T01:00:00.000Z", "end_timestamp": "2026-02-07T01:00:00.100Z", "tool": "Read"}, `+c.call+`]`)
		_, err := Convert(dir, "x", "s", "l")
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		for _, w := range append(c.want, "recording "+dir, "tool_calls.json") {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", c.name, err, w)
			}
		}
	}
	if _, err := Convert(writeCalls(t, `[]`), "x", "s", "l"); err == nil || !strings.Contains(err.Error(), "no calls") {
		t.Errorf("empty recording: %v", err)
	}
}

func TestConvertDir(t *testing.T) {
	root := t.TempDir()
	good, bad := filepath.Join(root, "good"), filepath.Join(root, "bad")
	for d, calls := range map[string]string{good: parallelCalls, bad: `[{"timestamp": "2026-02-07T01:00:01.000Z", "tool": "Bash"}]`} {
		os.Mkdir(d, 0o755)
		os.WriteFile(filepath.Join(d, "tool_calls.json"), []byte(calls), 0o644)
		os.WriteFile(filepath.Join(d, "resources.json"), []byte(samples()), 0o644)
	}
	os.Mkdir(filepath.Join(root, "empty"), 0o755)
	os.WriteFile(filepath.Join(root, "SOURCE.md"), []byte("notes"), 0o644)
	recs, err := ConvertDir(root, func(n string) string { return "src/" + n }, "GPL-2.0")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d recordings, want 3 (files are not recordings)", len(recs))
	}
	got := map[string]Recording{}
	for _, r := range recs {
		got[r.Name] = r
	}
	if r := got["good"]; r.Err != nil || r.Trace == nil || r.Trace.Source != "src/good" || r.Reordered != 3 {
		t.Errorf("good: %+v", r)
	}
	if r := got["bad"]; r.Err == nil || r.Trace != nil || !strings.Contains(r.Err.Error(), "no end_timestamp") {
		t.Errorf("bad: %+v", r)
	}
	if r := got["empty"]; r.Err == nil || !strings.Contains(r.Err.Error(), "no tool_calls.json") {
		t.Errorf("empty: %+v", r)
	}
}

func TestValidateNeedsStartOrderFromZero(t *testing.T) {
	st := func(start int64) Step {
		return Step{Tool: "x", StartMs: start, MemMB: []float64{0}, CPUPct: []float64{0}}
	}
	for _, c := range []struct {
		steps []Step
		want  string
	}{
		{[]Step{st(5), st(6)}, "first step starts at 0"},
		{[]Step{st(0), st(9), st(3)}, "before step 1"},
	} {
		tr := Trace{Version: FormatVersion, Name: "x", Steps: c.steps}
		if err := tr.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.steps, err, c.want)
		}
	}
}

// Overlapping calls share what the container sample measured instead of
// each replaying all of it.
func TestPlanSplitsSamplesAmongCallsInFlight(t *testing.T) {
	tr := &Trace{Version: FormatVersion, Name: "x", Steps: []Step{
		{Tool: "Task", StartMs: 0, DurMs: 1000, MemMB: []float64{100, 100}, CPUPct: []float64{100, 100}},
		{Tool: "Bash", StartMs: 500, DurMs: 500, MemMB: []float64{100}, CPUPct: []float64{100}},
	}}
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
	w := Plan(tr, trial.TraceParams{Compress: 1, MemScale: 1})
	mem := [][]int64{{w[0].Segs[0].MemBytes, w[0].Segs[1].MemBytes}, {w[1].Segs[0].MemBytes}}
	if want := [][]int64{{100e6, 50e6}, {50e6}}; !reflect.DeepEqual(mem, want) {
		t.Errorf("memory per segment %v, want %v (alone: all of it; two in flight: half each)", mem, want)
	}
	full := 500 * time.Millisecond
	if c := []time.Duration{w[0].Segs[0].CPU, w[0].Segs[1].CPU, w[1].Segs[0].CPU}; c[0] != full || c[1] != full/2 || c[2] != full/2 {
		t.Errorf("cpu time %v, want %v then half of it for each of the overlapping pair", c, full)
	}
}
