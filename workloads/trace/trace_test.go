package trace

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// A recording in the upstream format: calls in UTC, samples by epoch.
const callsJSON = `[
 {"timestamp": "2026-02-07T01:00:00.000Z", "end_timestamp": "2026-02-07T01:00:00.050Z", "tool": "Read", "input": {"file_path": "/x"}, "result_preview": "..."},
 {"timestamp": "2026-02-07T01:00:02.000Z", "end_timestamp": "2026-02-07T01:00:05.000Z", "tool": "Bash", "input": {"command": "pytest"}},
 {"timestamp": "2026-02-07T01:00:06.000Z", "end_timestamp": "2026-02-07T01:00:06.000Z", "tool": "Edit"}
]`

func samples() string {
	// epoch of 01:00:00Z on 2026-02-07
	e := float64(time.Date(2026, 2, 7, 1, 0, 0, 0, time.UTC).Unix())
	rows := []string{}
	mem := []string{"180MB / 1GB", "182MB / 1GB", "181MB / 1GB", "300MB / 1GB", "1.2GB / 1GB", "500MiB / 1GB", "181MB / 1GB", "181MB / 1GB"}
	cpu := []string{"5%", "20%", "5%", "100%", "150%", "80%", "3%", "3%"}
	for i := range mem {
		rows = append(rows, `{"timestamp": "local", "epoch": `+ftoa(e-0.5+float64(i))+`, "mem_usage": "`+mem[i]+`", "mem_percent": "1%", "cpu_percent": "`+cpu[i]+`"}`)
	}
	return `{"samples": [` + strings.Join(rows, ",") + `], "summary": {}}`
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func writeRecording(t *testing.T) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tool_calls.json"), []byte(callsJSON), 0o644)
	os.WriteFile(filepath.Join(dir, "resources.json"), []byte(samples()), 0o644)
	return dir
}

func TestConvert(t *testing.T) {
	tr, err := Convert(writeRecording(t), "x", "test", "GPL-2.0")
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Steps) != 3 || tr.SampleMs != 1000 {
		t.Fatalf("steps %d sample_ms %d", len(tr.Steps), tr.SampleMs)
	}
	s0, s1, s2 := tr.Steps[0], tr.Steps[1], tr.Steps[2]
	if s0.Tool != "Read" || s0.StartMs != 0 || s0.DurMs != 50 {
		t.Errorf("step 0 %+v", s0)
	}
	// Samples at -0.5, 0.5, 1.5, ... s; the Bash call runs 2..5 s, so its
	// samples are 2.5, 3.5, 4.5, 5.5 (one period past its end), relative
	// to the sample at 1.5 s (181 MB).
	if s1.Tool != "Bash" || s1.StartMs != 2000 || s1.DurMs != 3000 {
		t.Errorf("step 1 %+v", s1)
	}
	wantMem := []float64{119, 1019, 343.3, 0}
	if !reflect.DeepEqual(s1.MemMB, wantMem) {
		t.Errorf("step 1 mem %v, want %v (500MiB = 524.3MB)", s1.MemMB, wantMem)
	}
	if !reflect.DeepEqual(s1.CPUPct, []float64{100, 150, 80, 3}) {
		t.Errorf("step 1 cpu %v", s1.CPUPct)
	}
	// A call that returns at once has zero duration and one sample.
	if s2.DurMs != 0 || len(s2.MemMB) != 1 {
		t.Errorf("step 2 %+v", s2)
	}
}

func TestConvertErrors(t *testing.T) {
	dir := writeRecording(t)
	os.WriteFile(filepath.Join(dir, "resources.json"), []byte(`{"samples":[{"epoch":1,"mem_usage":"lots","cpu_percent":"1%"}]}`), 0o644)
	if _, err := Convert(dir, "x", "s", "l"); err == nil || !strings.Contains(err.Error(), "mem_usage") {
		t.Errorf("bad mem_usage: %v", err)
	}
	if _, err := Convert(t.TempDir(), "x", "s", "l"); err == nil || !strings.Contains(err.Error(), "tool_calls.json") {
		t.Errorf("missing files: %v", err)
	}
}

func TestPlanCompressesAndScales(t *testing.T) {
	tr, err := Convert(writeRecording(t), "x", "test", "GPL-2.0")
	if err != nil {
		t.Fatal(err)
	}
	p := trial.TraceParams{Compress: 10, MemScale: 0.5}
	w := Plan(tr, p)
	if len(w) != 3 {
		t.Fatalf("%d steps", len(w))
	}
	if w[1].Nominal != 300*time.Millisecond || w[1].Offset != 200*time.Millisecond || !reflect.DeepEqual(w[1].After, []int{0}) {
		t.Errorf("step 1 nominal %v offset %v after %v", w[1].Nominal, w[1].Offset, w[1].After)
	}
	if len(w[1].Segs) != 4 || w[1].Segs[1].MemBytes != int64(1019e6*0.5) {
		t.Errorf("step 1 segs %+v", w[1].Segs)
	}
	// 150% of a 75 ms segment: 112.5 ms of CPU time on two threads
	if sg := w[1].Segs[1]; sg.CPU != 112500*time.Microsecond || sg.Threads != 2 {
		t.Errorf("cpu %v on %d threads, want 112.5ms on 2", sg.CPU, sg.Threads)
	}
	// the recorded makespan: the last call ends 6 s after the first started
	if got := Nominal(w); got != 600*time.Millisecond {
		t.Errorf("nominal %v", got)
	}
	if !reflect.DeepEqual(w, Plan(tr, p)) {
		t.Error("plan not deterministic")
	}
	if n := len(Plan(tr, trial.TraceParams{Compress: 1, MemScale: 1, MaxSteps: 2})); n != 2 {
		t.Errorf("max_steps: %d steps", n)
	}
}

func TestRunStepTakesNominalTime(t *testing.T) {
	w := StepWork{Nominal: 60 * time.Millisecond, Segs: []Segment{
		{Dur: 30 * time.Millisecond, MemBytes: 3 << 20, CPU: time.Millisecond},
		{Dur: 30 * time.Millisecond, MemBytes: 1 << 20, CPU: time.Millisecond},
	}}
	start := time.Now()
	if _, err := RunStep(context.Background(), w, 1, 0); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Errorf("step took %v, less than its nominal 60ms", d)
	}
}

func TestParseMemUsage(t *testing.T) {
	for in, want := range map[string]float64{"185.7MB / 134.5GB": 185.7, "1.5GB / 2GB": 1500, "512KiB / 1GB": 0.524288, "0B / 1GB": 0} {
		got, err := parseMemUsage(in)
		if err != nil || math.Abs(got-want) > 1e-9 {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
}
