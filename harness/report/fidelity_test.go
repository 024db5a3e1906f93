package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/harness/analysis"
	"github.com/agentcgroup/agentcgroup/harness/trial"
)

func TestReportFidelity(t *testing.T) {
	var b bytes.Buffer
	fidelity(&b, &analysis.Summary{})
	if b.Len() != 0 {
		t.Errorf("a run without trace victims got a fidelity section:\n%s", b.String())
	}
	s := &analysis.Summary{Fidelity: []analysis.VictimFidelity{{Victim: "agent", Trials: 2, Steps: 20,
		Mem: map[string]int{trial.FidelityWithin: 3, trial.FidelityTooSmall: 16, trial.FidelityOff: 1},
		CPU: map[string]int{trial.FidelityWithin: 4, trial.FidelityTooSmall: 15, trial.FidelityNotMeasured: 1},
		Worst: []analysis.FidelityOffender{{Trial: "joint.solo.r00", Step: 9, Tool: "Bash", Resource: "memory",
			Expected: 100 << 20, Actual: 130 << 20, Ratio: 1.3}}}}}
	fidelity(&b, s)
	md := b.String()
	for _, want := range []string{
		"| `agent` | 2 | 20 | 3 | 1 | 16 | 4 | 0 | 15 | 0 / 1 |",
		"- `joint.solo.r00` step 9 (Bash): memory 130.0 MiB for 100.0 MiB recorded, 1.30×",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in:\n%s", want, md)
		}
	}
}
