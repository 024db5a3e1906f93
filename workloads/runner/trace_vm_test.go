package runner

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/harness/vmtest"
)

// In a trial, overlapping recorded calls run as concurrent steps, each in
// its own step cgroup, and a call that followed others waits for them:
// pre-commit-973 runs four Globs inside a subagent (Task) call, then a
// Bash that started after the Globs returned but while the Task ran.
func TestTraceParallelStepsInGuest(t *testing.T) {
	if vmtest.Run(t, vmtest.Options{CPUs: 2, MemMB: 1024, Timeout: 4 * time.Minute}) {
		return
	}
	spec := trial.ExampleSpec()
	spec.ID = "trace-parallel"
	spec.Warmup = 0
	spec.Duration = trial.Duration(4 * time.Second)
	spec.Sessions = []trial.Session{{ID: "victim"}}
	spec.Neighbours = nil
	spec.Victims = []trial.Victim{{Name: "agent", Kind: trial.VictimTrace, Session: "victim",
		Trace: &trial.TraceParams{Trace: "pre-commit__pre-commit-973", Compress: 50, MemScale: 0.5, MaxSteps: 6,
			StepClass: trial.ClassToolBurst, StepBudget: trial.Budget{MemoryMax: 64 << 20}}}}
	r := guestTrial(t, spec, "/out/trial")
	v := r.Manifest.Victims[0]
	if v.Count != 6 || v.Failed != 0 {
		t.Fatalf("victim %+v, want 6 steps replayed", v)
	}
	cgs := 0
	for cg := range r.After.Cgroups {
		if strings.HasPrefix(cg, trial.SessionPath("victim")+"/step_agent-0") {
			cgs++
		}
	}
	if cgs != 6 {
		t.Errorf("%d step cgroups, want one per replayed call (6)", cgs)
	}
	f, err := os.Open(TraceStepsPath(filepath.Join("/out/trial", trial.HistogramPath("agent"))))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	steps := map[int]traceStepLine{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var s traceStepLine
		if json.Unmarshal(sc.Bytes(), &s) == nil && s.Tool != "" {
			steps[s.Step] = s
			t.Logf("step %d %-5s offset %v due %v began %v latency %v after %v", s.Step, s.Tool, s.Offset, s.Due, s.Began, s.Latency, s.After)
		} else {
			t.Logf("%s", sc.Bytes())
		}
	}
	end := func(i int) trial.Duration { return steps[i].Began + steps[i].Latency }
	for i := 1; i <= 5; i++ {
		if !(steps[i].Began < end(0)) {
			t.Errorf("step %d began at %v, after the Task it ran inside ended (%v)", i, steps[i].Began, end(0))
		}
	}
	for i := 1; i <= 4; i++ {
		if steps[5].Began < end(i) {
			t.Errorf("Bash (step 5) began at %v, before Glob step %d ended (%v)", steps[5].Began, i, end(i))
		}
	}
	if v.Nominal <= 0 || v.Elapsed < v.Nominal {
		t.Errorf("elapsed %v, recorded makespan %v", v.Elapsed, v.Nominal)
	}
}
