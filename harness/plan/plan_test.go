package plan

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/harness/scenario"
	"github.com/agentcgroup/agentcgroup/harness/trial"
)

const text = `
name = "p"
seed = 7
repetitions = 3
[timing]
duration = "5s"
[budgets.victim]
memory_high = "64M"
[daemon]
config = "# test policy"
[[victims]]
name = "chat"
kind = "interactive"
period = "20ms"
[[neighbours]]
name = "spin"
kind = "cpu_spin"
[[neighbours]]
name = "blow"
set = "mem"
kind = "memory_blowup"
target = "128M"
[[neighbours]]
name = "forks"
set = "mem"
kind = "fork_storm"
`

func build(t *testing.T, seed string) *Plan {
	t.Helper()
	s, err := scenario.Parse("p.toml", []byte(replaceSeed(text, seed)), scenario.Kernels{"stock": false})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func replaceSeed(s, seed string) string {
	return strings.Replace(s, "seed = 7", "seed = "+seed, 1)
}

func TestCellsAndSolo(t *testing.T) {
	p := build(t, "7")
	// 4 configs x (2 sets + solo) x 3 reps
	if len(p.Trials) != 36 {
		t.Fatalf("%d trials, want 36", len(p.Trials))
	}
	seen := map[string]bool{}
	for i, tr := range p.Trials {
		if seen[tr.ID] {
			t.Errorf("duplicate id %s", tr.ID)
		}
		seen[tr.ID] = true
		// Interleaved: trial i belongs to repetition i/12.
		if tr.Rep != i/12 {
			t.Errorf("trial %d (%s) in rep %d, want block %d", i, tr.ID, tr.Rep, i/12)
		}
		sp := tr.Spec
		switch tr.Neighbour {
		case Solo:
			if !sp.Solo || len(sp.Neighbours) != 0 || len(sp.Sessions) != 1 {
				t.Errorf("%s: solo trial has neighbours %v", tr.ID, sp.Neighbours)
			}
		case "spin":
			if len(sp.Neighbours) != 1 || sp.Neighbours[0].Name != "spin" {
				t.Errorf("%s: neighbours %v", tr.ID, sp.Neighbours)
			}
		case "mem":
			if len(sp.Neighbours) != 2 {
				t.Errorf("%s: set mem should hold blow and forks, got %v", tr.ID, sp.Neighbours)
			}
		}
		if got := sp.Sessions[0].Steps[0].Budget.MemoryHigh; got != 64<<20 {
			t.Errorf("%s: victim memory_high %d", tr.ID, got)
		}
		wantSched := tr.Config == trial.ConfigCPUOnly || tr.Config == trial.ConfigJoint
		wantDaemon := tr.Config == trial.ConfigMemOnly || tr.Config == trial.ConfigJoint
		if (sp.Scheduler != nil) != wantSched || (sp.Daemon != nil) != wantDaemon {
			t.Errorf("%s: scheduler %v daemon %v", tr.ID, sp.Scheduler, sp.Daemon)
		}
		if sp.Seed != TrialSeed(7, tr.Rep) {
			t.Errorf("%s: seed not paired across configurations and neighbour sets", tr.ID)
		}
	}
}

func TestOrderFollowsSeed(t *testing.T) {
	order := func(p *Plan) string {
		b, _ := json.Marshal(p.Trials)
		return string(b)
	}
	a, b, c := build(t, "7"), build(t, "7"), build(t, "8")
	if order(a) != order(b) {
		t.Error("same seed, different plan")
	}
	if order(a) == order(c) {
		t.Error("different seed, same order")
	}
	// Not simply the nested-loop order.
	if a.Trials[0].ID == ID("baseline", "spin", 0) && a.Trials[1].ID == ID("baseline", "mem", 0) && a.Trials[2].ID == ID("baseline", Solo, 0) {
		t.Error("plan is not shuffled")
	}
}
