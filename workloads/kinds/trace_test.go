package kinds

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// A trace victim is session-shaped: it names its session and no step,
// and its parameters are checked where the kind lives, under the spec's
// typed trace field, with the messages trial gives its own typed kinds.
func TestTraceInSpec(t *testing.T) {
	if !SessionShaped(trial.VictimTrace) || SessionShaped(trial.VictimInteractive) || SessionShaped("nonesuch") {
		t.Error("only trace is session-shaped")
	}
	// trace neighbours come from agents entries only
	if slices.Contains(Names(trial.RoleNeighbour), trial.NeighbourTrace) || !slices.Contains(Names(trial.RoleVictim), trial.VictimTrace) {
		t.Errorf("scenario kinds: victims %v, neighbours %v", Names(trial.RoleVictim), Names(trial.RoleNeighbour))
	}

	s := trial.ExampleSpec()
	s.Victims = append(s.Victims, trial.Victim{Name: "agent", Kind: trial.VictimTrace, Session: "victim",
		Trace: &trial.TraceParams{Trace: "encode__httpx-2701", Compress: 20, MemScale: 0.5, Delay: trial.Duration(time.Second)}})
	s.Neighbours = append(s.Neighbours, trial.Neighbour{Name: "other", Kind: trial.NeighbourTrace, Session: "noisy", Step: "spin",
		Trace: &trial.TraceParams{Trace: "dask__dask-11628", Compress: 20, MemScale: 0.5, Delay: trial.Duration(time.Hour)}})
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}

	s.Victims[1].Session = "nonesuch"
	s.Victims[1].Trace.Delay = s.Duration
	s.Victims[1].Trace.StepBudget.CPUWeight = 20000
	s.Neighbours[1].Trace = nil
	err := s.Validate()
	for _, want := range []string{
		`victims[1].session "nonesuch": no such session in sessions[]`,
		`victims[1].trace.delay: 3s is not shorter than the measured phase 3s: no step would run`,
		`victims[1].trace.step_budget.cpu_weight: 20000, want 1..10000`,
		`neighbours[1]: set exactly one of cpu_spin, fork_storm, memory_blowup, trace, params (the one matching kind "trace")`,
		`neighbours[1].trace: missing parameters`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "victims[1].step") {
		t.Errorf("a trace victim's step is checked:\n%v", err)
	}

	s.Victims[1].Kind = "nonesuch"
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), `victims[1].kind "nonesuch": want interactive, tool_burst, trace or a registered kind (command)`) {
		t.Errorf("unknown kind: %v", err)
	}
}
