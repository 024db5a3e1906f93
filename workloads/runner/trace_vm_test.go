package runner

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/plan"
	"github.com/agentcgroup/agentcgroup/harness/scenario"
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
	steps := map[int]trial.TraceStep{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var s trial.TraceStep
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

// Several recorded sessions on one node, from a scenario's agents entries:
// each victim agent replays in a session of its own from its staggered
// start, and the misbehaving agent replays as a neighbour in its step.
func TestAgentsInGuest(t *testing.T) {
	if vmtest.Run(t, vmtest.Options{CPUs: 2, MemMB: 1024, Timeout: 4 * time.Minute}) {
		return
	}
	s, err := scenario.Parse("agents.toml", []byte(`
name = "agents"
seed = 9
configurations = ["baseline"]
[timing]
duration = "8s"
[budgets.victim]
memory_max = "128M"
[budgets.neighbour]
memory_max = "128M"
[[victims]]
name = "agent"
kind = "agents"
traces = ["encode__httpx-2701", "pre-commit__pre-commit-973", "libp2p__py-libp2p-533"]
stagger = "2s"
compress = 50
mem_scale = 0.1
max_steps = 8
[[neighbours]]
name = "rogue"
set = "bad"
kind = "agents"
traces = ["pre-commit__pre-commit-2524"]
compress = 50
mem_scale = 0.1
`), scenario.Kernels{"stock": false})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	var spec *trial.Spec
	for i := range p.Trials {
		if p.Trials[i].Neighbour == "bad" {
			spec = &p.Trials[i].Spec
		}
	}
	r := guestTrial(t, spec, "/out/trial")
	for _, v := range r.Manifest.Victims {
		t.Logf("victim %s: %d steps, elapsed %v, recorded %v", v.Name, v.Count, v.Elapsed, v.Nominal)
		// Under TCG each step's process start costs far more than the
		// compressed recording allows, so not every step fits the 8s.
		if v.Count < 3 || v.Failed != 0 || v.Nominal <= 0 {
			t.Errorf("victim %s replayed %d steps (%d failed), recorded makespan %v", v.Name, v.Count, v.Failed, v.Nominal)
		}
		steps := 0
		for cg := range r.After.Cgroups {
			if strings.HasPrefix(cg, trial.SessionPath(v.Name)+"/step_"+v.Name+"-0") {
				steps++
			}
		}
		if int64(steps) != v.Count {
			t.Errorf("victim %s: %d step cgroups in its own session for %d steps", v.Name, steps, v.Count)
		}
	}
	n := r.Manifest.Neighbours[0]
	t.Logf("neighbour %s: %d steps, %d failed", n.Name, n.Count, n.Failed)
	if n.Kind != trial.NeighbourTrace || n.Count == 0 || n.Error != "" {
		t.Errorf("misbehaving agent %+v", n)
	}
}
