package scenario

import (
	"reflect"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/traces"
)

const agentsText = `
name = "a"
seed = 3
configurations = ["baseline"]
[timing]
duration = "20s"
[budgets.victim]
memory_max = "128M"
[[victims]]
name = "agent"
kind = "agents"
traces = ["encode__httpx-2701", "dask__dask-11628"]
count = 3
stagger = "5s"
compress = 10
mem_scale = 0.1
[[neighbours]]
name = "rogue"
set = "bad"
kind = "agents"
count = 2
mem_scale = 0.5
`

func TestAgentsExpandIntoSessions(t *testing.T) {
	s, err := Parse("a.toml", []byte(agentsText), kernels)
	if err != nil {
		t.Fatal(err)
	}
	var names, tr []string
	var delays []time.Duration
	for _, v := range s.Victims {
		if v.Kind != trial.VictimTrace || v.Session != v.Name || v.Trace.Compress != 10 || v.Trace.MemScale != 0.1 || v.Trace.StepBudget.MemoryMax != 128<<20 || s.Classes[v.Name] != trial.ClassToolBurst {
			t.Errorf("victim %+v %+v class %q", v, v.Trace, s.Classes[v.Name])
		}
		names, tr, delays = append(names, v.Name), append(tr, v.Trace.Trace), append(delays, v.Trace.Delay.D())
	}
	if !reflect.DeepEqual(names, []string{"agent-1", "agent-2", "agent-3"}) {
		t.Errorf("victims %v", names)
	}
	// a listed set is used in order, cycling
	if !reflect.DeepEqual(tr, []string{"encode__httpx-2701", "dask__dask-11628", "encode__httpx-2701"}) {
		t.Errorf("traces %v", tr)
	}
	distinct := map[time.Duration]bool{}
	for _, d := range delays {
		if d < 0 || d >= 5*time.Second {
			t.Errorf("delay %v outside [0, 5s)", d)
		}
		distinct[d] = true
	}
	if len(distinct) < 2 {
		t.Errorf("delays %v are not staggered", delays)
	}
	again, _ := Parse("a.toml", []byte(agentsText), kernels)
	if !reflect.DeepEqual(again.Victims, s.Victims) {
		t.Error("the same seed gave different agents")
	}

	// neighbours: drawn from every shipped trace, in the neighbour session
	if len(s.Neighbours) != 2 || len(s.NeighbourSets) != 1 || s.NeighbourSets[0] != "bad" {
		t.Fatalf("neighbours %+v sets %v", s.Neighbours, s.NeighbourSets)
	}
	for _, n := range s.Neighbours {
		if n.Kind != trial.NeighbourTrace || n.Session != NeighbourSession || n.Step != n.Name || s.SetOf[n.Name] != "bad" || n.Trace.MemScale != 0.5 {
			t.Errorf("neighbour %+v %+v", n, n.Trace)
		}
		if !contains(traces.Names(), n.Trace.Trace) {
			t.Errorf("neighbour replays %q, not a shipped trace", n.Trace.Trace)
		}
	}
	if _, ok := s.SetOf["rogue"]; ok {
		t.Error("the entry's own name is left as a neighbour")
	}
}

func TestAgentsProblems(t *testing.T) {
	ps := problemsOf(t, `name = "a"
seed = 3
configurations = ["baseline"]
[timing]
duration = "5s"
[[victims]]
name = "agent"
kind = "agents"
traces = ["no-such-trace"]
count = 0
stagger = "5s"
[[victims]]
name = "agent-1"
kind = "trace"
trace = "nope"
`)
	want(t, ps, 9, "victims[0].traces", `unknown trace "no-such-trace"`)
	want(t, ps, 10, "victims[0].count", "want 1..64")
	want(t, ps, 11, "victims[0].stagger", "not shorter than timing.duration")
	want(t, ps, 15, "victims[1].trace", `unknown trace "nope"`)

	ps = problemsOf(t, `name = "a"
seed = 3
configurations = ["baseline"]
[timing]
duration = "5s"
[[victims]]
name = "agent"
kind = "agents"
count = 2
[[victims]]
name = "agent-2"
kind = "trace"
trace = "encode__httpx-2701"
`)
	want(t, ps, 11, "victims[1].name", `"agent-2" is already used by victims[0]`)
}
