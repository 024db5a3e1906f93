package plan

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/harness/scenario"
	"github.com/agentcgroup/agentcgroup/harness/stack"
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
		if sp.Stack.Name != tr.Config || sp.Cell != tr.Config {
			t.Errorf("%s: cell %q runs configuration %q", tr.ID, sp.Cell, sp.Stack.Name)
		}
		wantSched := sp.Stack.Scheduler != stack.SchedNone
		if (sp.Scheduler != nil) != wantSched || (sp.Daemon != nil) != sp.Stack.Daemon {
			t.Errorf("%s: scheduler %v daemon %v", tr.ID, sp.Scheduler, sp.Daemon)
		}
		if (sp.Policy != "") != (sp.Stack.Policy != stack.PolicyNone) {
			t.Errorf("%s: policy source %s but policy %q", tr.ID, sp.Stack.Policy, sp.Policy)
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

// With two memory modes, mem-only and joint become one cell per mode, each
// trial's daemon is told its mode, and the other configurations stay single.
func TestMemoryModesSplitDaemonCells(t *testing.T) {
	src := strings.Replace(text, "seed = 7", "seed = 7\nkernel = \"patched\"\nmemory_modes = [\"mainline\", \"full\"]", 1)
	s, err := scenario.Parse("p.toml", []byte(src), scenario.Kernels{"stock": false, "patched": true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	want := "baseline cpu-only mem-only-mainline mem-only-full joint-mainline joint-full"
	if got := strings.Join(p.Configs, " "); got != want {
		t.Fatalf("configs %q, want %q", got, want)
	}
	for _, tr := range p.Trials {
		st := tr.Spec.Stack
		mode, daemonMode := string(st.Memory), ""
		args := st.DaemonArgs()
		for i, a := range args {
			if a == "--memory-mode" && i+1 < len(args) {
				daemonMode = args[i+1]
			}
		}
		if st.Daemon {
			if tr.Config != st.Name+"-"+mode || daemonMode != mode || tr.Spec.Daemon == nil {
				t.Errorf("%s: label %s, spec mode %s, daemon told %q", tr.ID, tr.Config, mode, daemonMode)
			}
		} else if tr.Config != st.Name || tr.Spec.Daemon != nil || st.Memory != stack.MemStatic {
			t.Errorf("%s: label %s for config %+v", tr.ID, tr.Config, st)
		}
	}
	if _, err := scenario.Parse("p.toml", []byte(strings.Replace(src, `kernel = "patched"`, `kernel = "stock"`, 1)),
		scenario.Kernels{"stock": false, "patched": true}); err == nil || !strings.Contains(err.Error(), "memory_modes") {
		t.Errorf("full mode on a stock kernel should be refused naming memory_modes: %v", err)
	}
}
