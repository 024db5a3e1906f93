package analysis

import (
	"testing"

	"github.com/agentcgroup/agentcgroup/harness/trial"
)

func TestFidelity(t *testing.T) {
	v := func(x float64) *float64 { return &x }
	meas := func(exp, act float64) trial.Measure { return trial.Compare(v(exp), v(act), 10) }
	step := func(i int, mem, cpu trial.Measure) trial.TraceStep {
		return trial.TraceStep{Step: i, Tool: "Bash", Fidelity: &trial.StepFidelity{Source: trial.FidelityCgroup, Mem: mem, CPU: cpu}}
	}
	trials := []*TrialResult{
		{ID: "a", Raw: &trial.Raw{Steps: map[string][]trial.TraceStep{"agent": {
			step(0, meas(100, 105), meas(100, 300)), // cpu 3x
			step(1, meas(5, 50), meas(100, 95)),     // memory too small
			{Step: 2, Tool: "Read"},                 // no record
		}}}},
		{ID: "b", Raw: &trial.Raw{Steps: map[string][]trial.TraceStep{"agent": {
			step(0, meas(100, 40), meas(100, 100)), // memory 0.4x: further off than 2x, less than 3x
			step(1, meas(100, 120), trial.Compare(nil, v(1), 10)),
		}}}},
	}
	fs := Fidelity(trials)
	if len(fs) != 1 {
		t.Fatalf("%+v", fs)
	}
	f := fs[0]
	if f.Victim != "agent" || f.Trials != 2 || f.Steps != 5 {
		t.Errorf("%+v", f)
	}
	wantMem := map[string]int{trial.FidelityWithin: 1, trial.FidelityOff: 2, trial.FidelityTooSmall: 1, trial.FidelityNotMeasured: 1}
	wantCPU := map[string]int{trial.FidelityWithin: 2, trial.FidelityOff: 1, trial.FidelityNotRecorded: 1, trial.FidelityNotMeasured: 1}
	for k, n := range wantMem {
		if f.Mem[k] != n {
			t.Errorf("memory %s: %d steps, want %d (%v)", k, f.Mem[k], n, f.Mem)
		}
	}
	for k, n := range wantCPU {
		if f.CPU[k] != n {
			t.Errorf("cpu %s: %d steps, want %d (%v)", k, f.CPU[k], n, f.CPU)
		}
	}
	var got []string
	for _, o := range f.Worst {
		got = append(got, o.Trial+"/"+o.Resource)
	}
	if want := []string{"a/cpu", "b/memory", "b/memory"}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("worst %v, want %v (3x, then 0.4x, then 1.2x)", got, want)
	}
}
