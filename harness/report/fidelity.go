package report

import (
	"bytes"
	"fmt"

	"github.com/agentcgroup/agentcgroup/harness/analysis"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/trace"
)

// fidelity tables, per trace victim, how many replayed steps used the
// memory and CPU time of their scaled recording, and names the worst
// misses. Nothing is written for a run without trace victims.
func fidelity(b *bytes.Buffer, s *analysis.Summary) {
	if len(s.Fidelity) == 0 {
		return
	}
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p("## Replay fidelity of trace victims\n\n")
	p("Every replayed step's peak memory (memory.peak of its step cgroup) against its recorded peak above the call's start times mem_scale, and its CPU time (cpu.stat usage_usec) against the recorded CPU time divided by compress, over all usable trials. *Within* is within ±%.0f%%. A step is *too small* (memory) or *too short* (CPU) to check when its recording asks for less than its own process costs, measured per step: the memory the process held before it allocated any, and the CPU it used besides spinning to its budget (its start and exit, and faulting in its memory, which under TCG can exceed a call's recorded CPU); CPU is also only checked from %v of recorded CPU up, as the process's exit comes after its budget. Under TCG guest CPU time also counts time the host took from the guest while a step ran. *Unknown* counts steps with no recorded value or no measurement.\n\n",
		100*trial.FidelityTolerance, trace.MinCheckCPU)
	p("| victim | trials | steps | memory within | memory off | memory too small | CPU within | CPU off | CPU too short | unknown (memory / CPU) |\n")
	p("|---|---|---|---|---|---|---|---|---|---|\n")
	unknown := func(m map[string]int) int { return m[trial.FidelityNotRecorded] + m[trial.FidelityNotMeasured] }
	for _, f := range s.Fidelity {
		p("| `%s` | %d | %d | %d | %d | %d | %d | %d | %d | %d / %d |\n", f.Victim, f.Trials, f.Steps,
			f.Mem[trial.FidelityWithin], f.Mem[trial.FidelityOff], f.Mem[trial.FidelityTooSmall],
			f.CPU[trial.FidelityWithin], f.CPU[trial.FidelityOff], f.CPU[trial.FidelityTooSmall],
			unknown(f.Mem), unknown(f.CPU))
	}
	p("\n")
	for _, f := range s.Fidelity {
		if len(f.Worst) == 0 {
			continue
		}
		p("Worst misses of `%s`:\n\n", f.Victim)
		for _, o := range f.Worst {
			got, want := fmt.Sprintf("%.1f MiB", o.Actual/(1<<20)), fmt.Sprintf("%.1f MiB", o.Expected/(1<<20))
			if o.Resource == "cpu" {
				got, want = fmt.Sprintf("%.0f ms", o.Actual/1000), fmt.Sprintf("%.0f ms", o.Expected/1000)
			}
			p("- `%s` step %d (%s): %s %s for %s recorded, %.2f×\n", o.Trial, o.Step, o.Tool, o.Resource, got, want, o.Ratio)
		}
		p("\n")
	}
}
