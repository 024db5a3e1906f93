package kinds

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/latency"
)

// cyclictest -q -h 8 -t 2 (rt-tests 2.x layout: tab-separated counts, the
// summary lines after the histogram).
const cyclictestHist = `# /dev/cpu_dma_latency set to 0us
# Histogram
000000 000000	000000
000001 000003	000001
000002 000010	000004
000003 000002	000000
000004 000000	000000
000005 000000	000000
000006 000000	000000
000007 000000	000001
# Total: 000000016 000000007
# Min Latencies: 00001 00001
# Avg Latencies: 00002 00004
# Max Latencies: 00003 00250
# Histogram Overflows: 00001 00001
# Histogram Overflow at cycle number:
# Thread 0: 00013
# Thread 1: 00002
`

func parseAll(t *testing.T, p latencyParser, out string) (map[time.Duration]int64, []string) {
	t.Helper()
	got := map[time.Duration]int64{}
	var unused []string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		ss, used := p.line(l)
		if !used {
			unused = append(unused, l)
		}
		for _, s := range ss {
			got[s.d] += s.n
		}
	}
	for _, s := range p.end() {
		got[s.d] += s.n
	}
	return got, unused
}

func TestCyclictestHistogram(t *testing.T) {
	got, unused := parseAll(t, &cyclictestParser{}, cyclictestHist)
	us := time.Microsecond
	// thread 0: 3x1, 10x2, 2x3, overflow at its max 3; thread 1: 1x1, 4x2, 1x7, overflow at 250
	want := map[time.Duration]int64{1 * us: 4, 2 * us: 14, 3 * us: 3, 7 * us: 1, 250 * us: 1}
	if !equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if len(unused) != 0 {
		t.Errorf("lines left for the log: %q", unused)
	}
}

func TestCyclictestHistofall(t *testing.T) {
	// --histofall adds a total column, which must not be counted again
	out := "000001 000002\t000001\t000003\n000002 000001\t000000\t000001\n# Max Latencies: 00002 00001\n# Histogram Overflows: 00000 00000\n"
	got, _ := parseAll(t, &cyclictestParser{}, out)
	want := map[time.Duration]int64{time.Microsecond: 3, 2 * time.Microsecond: 1}
	if !equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestCyclictestVerbose(t *testing.T) {
	// cyclictest -v: "thread: cycle: latency" per sample
	out := "Max CPUs = 2\n       0:       0:      13\n       0:       1:       4\n       1:       0:     120\n"
	got, unused := parseAll(t, &cyclictestParser{}, out)
	want := map[time.Duration]int64{13 * time.Microsecond: 1, 4 * time.Microsecond: 1, 120 * time.Microsecond: 1}
	if !equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if len(unused) != 1 || unused[0] != "Max CPUs = 2" {
		t.Errorf("lines left for the log: %q", unused)
	}
}

func TestCyclictestSummaryOnly(t *testing.T) {
	// -q without -h: a summary, no samples
	out := "T: 0 ( 1234) P:80 I:1000 C:   1000 Min:      3 Act:    5 Avg:    4 Max:      40\n"
	if got, _ := parseAll(t, &cyclictestParser{}, out); len(got) != 0 {
		t.Errorf("a summary is not samples: got %v", got)
	}
}

func TestLines(t *testing.T) {
	out := "starting\n12.5ms\n 300 us\n2s\n1e3ns\n40µs\n7\nnot 5ms\n"
	got, unused := parseAll(t, &linesParser{}, out)
	want := map[time.Duration]int64{12500 * time.Microsecond: 1, 300 * time.Microsecond: 1, 2 * time.Second: 1,
		time.Microsecond: 1, 40 * time.Microsecond: 1}
	if !equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if strings.Join(unused, "|") != "starting|7|not 5ms" {
		t.Errorf("lines left for the log: %q", unused)
	}
	// with a unit, a bare number counts
	got, _ = parseAll(t, &linesParser{unit: time.Millisecond}, "7\n3us\n")
	if !equal(got, map[time.Duration]int64{7 * time.Millisecond: 1, 3 * time.Microsecond: 1}) {
		t.Errorf("unit ms: got %v", got)
	}
}

func equal(a, b map[time.Duration]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestCheck(t *testing.T) {
	k := Lookup("command")
	for _, c := range []struct {
		role trial.Role
		json string
		want string // "" valid, else a substring of the error
	}{
		{trial.RoleVictim, `{"argv":["cyclictest","-q","-h","400"],"parser":"cyclictest"}`, ""},
		{trial.RoleVictim, `{"argv":["x"],"parser":"lines","unit":"ms"}`, ""},
		{trial.RoleVictim, `{"argv":["x"]}`, "parser"},
		{trial.RoleVictim, `{"argv":["x"],"parser":"cyclictest","unit":"ms"}`, "unit"},
		{trial.RoleVictim, `{"argv":[],"parser":"lines"}`, "argv: empty"},
		{trial.RoleNeighbour, `{"argv":["stress-ng","--cpu","2"]}`, ""},
		{trial.RoleNeighbour, `{"argv":["x"],"parser":"lines"}`, "not measured"},
		{trial.RoleVictim, `{"argv":["x"],"parser":"lines","extra":1}`, "unknown field"},
	} {
		var msg string
		p, err := k.Decode(json.RawMessage(c.json))
		if err != nil {
			msg = err.Error()
		} else {
			msg = strings.Join(k.Check(p, c.role, nil), "; ")
		}
		if (c.want == "") != (msg == "") || !strings.Contains(msg, c.want) {
			t.Errorf("%s %s: got %q, want %q", c.role, c.json, msg, c.want)
		}
	}
}

func TestRunVictim(t *testing.T) {
	var buf bytes.Buffer
	var log syncBuffer // the command's stderr and the unparsed lines share it, as they share the workloads log
	start := time.Now()
	rec, err := latency.New(&buf, start, latency.DefaultInterval, "test")
	if err != nil {
		t.Fatal(err)
	}
	p := &CommandParams{Argv: []string{"/bin/sh", "-c", "echo 5ms; echo hello; echo 7ms; sleep 30"}, Parser: ParserLines}
	began := time.Now()
	err = runCommandVictim(context.Background(), VictimRun{Params: p, Start: start, Dur: 500 * time.Millisecond, Rec: rec, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("the command outlived the measured phase by %v", d)
	}
	if rec.Count() != 2 || rec.Max() < 7*time.Millisecond {
		t.Errorf("count %d max %v, want 2 and >= 7ms", rec.Count(), rec.Max())
	}
	if !strings.Contains(log.String(), "hello") {
		t.Errorf("the log lacks the unparsed line: %q", log.String())
	}
	// no latencies in the output is an error
	rec, _ = latency.New(&buf, start, latency.DefaultInterval, "test")
	p = &CommandParams{Argv: []string{"/bin/true"}, Parser: ParserCyclictest}
	if err := runCommandVictim(context.Background(), VictimRun{Params: p, Start: time.Now(), Dur: time.Second, Rec: rec}); err == nil || !strings.Contains(err.Error(), "-h N") {
		t.Errorf("got %v, want an error on no latencies", err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunNeighbour(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := runCommandNeighbour(ctx, CommandParams{Argv: []string{"/bin/sh", "-c", "sleep 0.1"}}, nil)
	if err != nil || st.Ops < 2 || st.Failed != 0 {
		t.Errorf("got %+v %v, want >= 2 runs restarted, none failed", st, err)
	}
}

// TestSpecValidate: a spec's registered-kind params are checked by the
// kind, with the field path of the params.
func TestSpecValidate(t *testing.T) {
	s := trial.ExampleSpec()
	s.Victims[0].Kind, s.Victims[0].Interactive = "command", nil
	s.Victims[0].Params = json.RawMessage(`{"argv":["cyclictest","-q","-h","100"],"parser":"cyclictest"}`)
	s.Neighbours[0].Kind, s.Neighbours[0].CPUSpin = "command", nil
	s.Neighbours[0].Params = json.RawMessage(`{"argv":["stress-ng","--cpu","1"]}`)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	b, _ := s.Encode()
	if _, err := trial.DecodeSpec(b); err != nil {
		t.Fatalf("round trip: %v", err)
	}
	s.Victims[0].Params = json.RawMessage(`{"argv":["x"],"parser":"nonesuch"}`)
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "victims[0].params.parser:") {
		t.Errorf("got %v, want victims[0].params.parser", err)
	}
	s.Victims[0].Params = nil
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "exactly one") {
		t.Errorf("got %v, want a missing-params error", err)
	}
}
