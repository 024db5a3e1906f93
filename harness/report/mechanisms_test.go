package report_test

import (
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/harness/analysis/analysistest"
	"github.com/agentcgroup/agentcgroup/harness/plan"
	"github.com/agentcgroup/agentcgroup/harness/report"
	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// Every configuration whose counters show its mechanisms is called by its
// name; one whose scheduler read private maps and never penalized the
// thrashing neighbour is not, and the report says which mechanism failed.
func TestReportMechanisms(t *testing.T) {
	m := analysistest.Default()
	m.Evidence = func(tr plan.Trial) trial.Evidence {
		ev := analysistest.FullEvidence(tr, m.HighEvents(tr.Config, tr.Neighbour))
		if tr.Config == "joint" {
			ev.Scheduler.PolicyMapID = 99 // its own map, not the daemon's
			for p, c := range ev.Scheduler.Cgroups {
				c.Penalties, c.Boosts = 0, 0
				ev.Scheduler.Cgroups[p] = c
			}
		}
		return ev
	}
	s := analysistest.Analyzed(t, 2, m)
	md := string(report.Markdown(s, nil))
	for _, want := range []string{
		"- cpu-only: scx_agent_flatcg (all tasks); step policy written once from the profiles; static memory budgets. as named",
		"- **joint**: ",
		"**not as named: step policy did not engage in 6/6 trials where it should have; boost did not engage in 6/6 trials",
		"thrash penalty did not engage in 2/6 trials",
		"joint, step policy missing: joint.cpu.r00: the scheduler read maps 99/8, the policy was written to 7/8: not shared",
		"joint, thrash penalty missing: joint.mem.r00: 1 steps reached their penalty score, none was penalized",
		"| joint | 6 | engaged 6 | **missing 6** | **missing 6** | engaged 6 | engaged 2, idle 4 | engaged 6 | idle 6 | idle 4, **missing 2** |",
		"- baseline: fair-class CPU; static memory budgets. as named: no enforcement mechanism ran.",
		"| baseline | 6 | - | - | - | - | - | - | - | - |",
		"**joint is not what its name says: step policy did not engage",
		"| joint | daemon | 60 (60–60) | 15 (15–15) | 0.1 (0.1–0.1) | 0.2 (0.2–0.2) |",
		// Recorded before the steady span was split: the old column only.
		"| joint | scheduler | 90 (90–90) | - | - | 0.3 (0.3–0.3) |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
}
