package scenario

import (
	"encoding/json"
	"testing"

	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// A kind registered in workloads/kinds (command) parses through the same
// checks as the built-in kinds: its keys, file:line:field problems, stray
// keys on other kinds.

const commandScenario = `name = "t"
seed = 1
configurations = ["baseline"]
[timing]
duration = "5s"
[[victims]]
name = "rt"
kind = "command"
command = ["cyclictest", "-q", "-h", "400", "-i", "1000"]
parser = "cyclictest"
[[neighbours]]
name = "stress"
kind = "command"
command = "stress-ng --cpu 2"
`

func TestCommandKind(t *testing.T) {
	s, err := Parse("ok.toml", []byte(commandScenario), kernels)
	if err != nil {
		t.Fatal(err)
	}
	v, n := s.Victims[0], s.Neighbours[0]
	var vp, np struct {
		Argv   []string `json:"argv"`
		Parser string   `json:"parser"`
	}
	if err := json.Unmarshal(v.Params, &vp); err != nil || len(vp.Argv) != 6 || vp.Parser != "cyclictest" {
		t.Errorf("victim params %s (%v)", v.Params, err)
	}
	if err := json.Unmarshal(n.Params, &np); err != nil || len(np.Argv) != 3 || np.Argv[2] != "stress-ng --cpu 2" || np.Parser != "" {
		t.Errorf("neighbour params %s (%v)", n.Params, err)
	}
	if v.Step != "rt" || s.Classes["rt"] != trial.ClassToolBurst || s.Classes["stress"] != trial.ClassBackground {
		t.Errorf("step %q classes %v", v.Step, s.Classes)
	}
}

func TestCommandKindProblems(t *testing.T) {
	ps := problemsOf(t, `name = "t"
seed = 1
[timing]
duration = "5s"
[[victims]]
name = "rt"
kind = "command"
command = 3
unit = "fortnights"
[[victims]]
name = "chat"
kind = "interactive"
period = "20ms"
parser = "lines"
[[neighbours]]
name = "stress"
kind = "command"
command = ["stress-ng"]
parser = "lines"
frobnicate = 1
`)
	want(t, ps, 8, "victims[0].command", "want a command line")
	want(t, ps, 5, "victims[0].parser", "required")
	want(t, ps, 9, "victims[0].unit", `"fortnights", want ns`)
	want(t, ps, 14, "victims[1].parser", "does not apply to kind interactive")
	want(t, ps, 19, "neighbours[0].parser", "only victims take a parser")
	want(t, ps, 20, "neighbours[0].frobnicate", "unknown field")
}
