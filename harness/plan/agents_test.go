package plan

import (
	"testing"

	"github.com/agentcgroup/agentcgroup/harness/scenario"
	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// Agents become trace victims each in a session of its own, and a
// misbehaving agent a trace neighbour in the noisy session; every trial's
// spec is valid.
func TestAgentsGetSessionsOfTheirOwn(t *testing.T) {
	s, err := scenario.Parse("a.toml", []byte(`
name = "a"
seed = 5
configurations = ["baseline"]
[timing]
duration = "20s"
[[victims]]
name = "agent"
kind = "agents"
traces = ["encode__httpx-2701", "dask__dask-11628"]
count = 3
stagger = "5s"
[[neighbours]]
name = "rogue"
set = "bad"
kind = "agents"
traces = ["pre-commit__pre-commit-2524"]
`), scenario.Kernels{"stock": false})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Trials) != 2 {
		t.Fatalf("%d trials, want the misbehaving set and solo", len(p.Trials))
	}
	for _, tr := range p.Trials {
		sp := tr.Spec
		if err := sp.Validate(); err != nil {
			t.Errorf("%s: %v", tr.ID, err)
		}
		sessions := map[string]bool{}
		for _, se := range sp.Sessions {
			sessions[se.ID] = true
		}
		for _, v := range sp.Victims {
			if v.Session != v.Name || !sessions[v.Session] {
				t.Errorf("%s: victim %s in session %q; sessions %v", tr.ID, v.Name, v.Session, sessions)
			}
		}
		if tr.Neighbour == "bad" {
			if len(sp.Neighbours) != 1 || sp.Neighbours[0].Kind != trial.NeighbourTrace || sp.Neighbours[0].Session != scenario.NeighbourSession {
				t.Errorf("%s: neighbours %+v", tr.ID, sp.Neighbours)
			}
		}
	}
}
