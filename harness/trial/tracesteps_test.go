package trial

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

func f64(v float64) *float64 { return &v }

func TestCompare(t *testing.T) {
	const floor = 10
	for _, c := range []struct {
		name             string
		expected, actual *float64
		ratio            float64
		verdict          string
	}{
		{"exact", f64(100), f64(100), 1, FidelityWithin},
		{"10% over is within", f64(100), f64(110), 1.1, FidelityWithin},
		{"10% under is within", f64(100), f64(90), 0.9, FidelityWithin},
		{"just over", f64(100), f64(110.5), 1.105, FidelityOff},
		{"just under", f64(100), f64(89.5), 0.895, FidelityOff},
		{"twice", f64(50), f64(100), 2, FidelityOff},
		{"nothing used", f64(50), f64(0), 0, FidelityOff},
		// below the floor the ratio is kept but not judged
		{"too small", f64(5), f64(9), 1.8, FidelityTooSmall},
		{"recorded zero", f64(0), f64(3), 0, FidelityTooSmall},
		{"not recorded", nil, f64(3), 0, FidelityNotRecorded},
		{"not measured", f64(100), nil, 0, FidelityNotMeasured},
		{"neither", nil, nil, 0, FidelityNotRecorded},
	} {
		m := Compare(c.expected, c.actual, floor)
		if m.Verdict != c.verdict || m.Ratio < c.ratio-1e-12 || m.Ratio > c.ratio+1e-12 {
			t.Errorf("%s: %v vs %v: ratio %v verdict %q, want %v %q", c.name, c.actual, c.expected, m.Ratio, m.Verdict, c.ratio, c.verdict)
		}
		if m.Expected != c.expected || m.Actual != c.actual || m.Floor != floor {
			t.Errorf("%s: values not kept", c.name)
		}
	}
}

// A steps log holds step lines, with or without a fidelity record, and
// the session line; the session line is told apart by its key.
func TestReadTraceSteps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.steps.jsonl")
	log := `{"step":1,"tool":"Read","offset":"1ms","nominal":"2ms","due":"1ms","began":"2ms","latency":"40ms","fidelity":{"source":"cgroup","mem_bytes":{"expected":1000,"actual":5000000,"ratio":5000,"verdict":"too_small"},"cpu_usec":{"actual":30000,"verdict":"not_recorded"}}}
{"step":0,"tool":"Bash","offset":"0s","nominal":"1s","due":"0s","began":"1ms","latency":"1.2s","error":"not started: step setup failed"}

{"session":"victim","trace":"x","steps":3,"started":2,"makespan":"1.3s","recorded_makespan":"1s"}
`
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	steps, sess, err := ReadTraceSteps(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 2 || sess == nil || sess.Started != 2 || sess.Trace != "x" {
		t.Fatalf("steps %+v session %+v", steps, sess)
	}
	f := steps[0].Fidelity
	want := &StepFidelity{Source: FidelityCgroup,
		Mem: Measure{Expected: f64(1000), Actual: f64(5e6), Ratio: 5000, Verdict: FidelityTooSmall},
		CPU: Measure{Actual: f64(30000), Verdict: FidelityNotRecorded}}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("fidelity %+v, want %+v", f, want)
	}
	if steps[1].Fidelity != nil || steps[1].Error == "" {
		t.Errorf("step that never ran: %+v", steps[1])
	}
	os.WriteFile(path, []byte("{\"step\":1}\nnot json\n"), 0o644)
	if _, _, err := ReadTraceSteps(path); err == nil {
		t.Error("a malformed line was accepted")
	}
}

// A trace victim's steps log named in the manifest loads with the trial;
// a malformed one makes the trial unreadable like any malformed file.
func TestLoadTraceSteps(t *testing.T) {
	dir := writeRaw(t, []int64{1, 2})
	var m Manifest
	readJSON(filepath.Join(dir, ManifestFile), &m)
	m.Victims[0].Steps = TraceStepsPath("chat")
	fsutil.WriteJSON(filepath.Join(dir, ManifestFile), m)
	line := `{"step":0,"tool":"Bash","offset":"0s","nominal":"1s","due":"0s","began":"0s","latency":"1s","fidelity":{"source":"cgroup","mem_bytes":{"expected":100,"actual":105,"ratio":1.05,"verdict":"within"},"cpu_usec":{"expected":100,"actual":150,"ratio":1.5,"verdict":"off"}}}` + "\n"
	fsutil.WriteFile(filepath.Join(dir, TraceStepsPath("chat")), []byte(line))
	r, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s := r.Steps["chat"]; len(s) != 1 || s[0].Fidelity.CPU.Verdict != FidelityOff {
		t.Errorf("steps %+v", s)
	}
	fsutil.WriteFile(filepath.Join(dir, TraceStepsPath("chat")), []byte("{"))
	if _, err := Load(dir); err == nil {
		t.Error("a malformed steps log loaded")
	}
}
