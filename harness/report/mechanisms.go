package report

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/agentcgroup/agentcgroup/harness/analysis"
	"github.com/agentcgroup/agentcgroup/harness/sweep"
)

// configurations writes what each configuration runs, whether its
// counters show it ran that, and the actions behind the verdict. A
// configuration's name in the rest of the report is a claim this section
// backs or withdraws.
func configurations(b *bytes.Buffer, s *analysis.Summary) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	rows := s.MechanismTable()
	p("## Configurations and the mechanisms that engaged\n\n")
	p("Each configuration is called by its name only when the stack's own counters (scheduler report, pinned BPF maps, daemon event log, memcg_agent_ops counters, read at the end of each measured phase) show its mechanisms ran and nothing it excludes did.\n\n")
	for _, r := range rows {
		what := r.Stack.Describe()
		if c := s.Sweep.Cell(r.Config); c != nil {
			what += fmt.Sprintf("; sweep point %s on %s", sweep.Describe(c.Settings), c.Base)
		}
		if r.Trials == 0 {
			what = "no usable trials"
		}
		mark := ""
		if !r.Honest {
			mark = "**"
		}
		p("- %s%s%s: %s. %s%s%s.", mark, r.Config, mark, what, mark, r.Verdict, mark)
		if why := s.Unavailable[r.Config]; len(why) > 0 {
			p(" **Not fully in force:** %s.", strings.Join(why, "; "))
		}
		p("\n")
	}
	p("\n")

	p("### Mechanisms engaged\n\n")
	p("Trials per status, over all neighbour sets and solo runs: engaged (ran), idle (promised, never called for), **missing** (promised and called for, did not run), **unexpected** (not part of the configuration, ran); `-` not part of it.\n\n")
	p("| configuration | trials |")
	for _, m := range analysis.MechanismNames {
		p(" %s |", m)
	}
	p("\n|---|---|%s\n", strings.Repeat("---|", len(analysis.MechanismNames)))
	for _, r := range rows {
		p("| %s | %d |", r.Config, r.Trials)
		for _, m := range analysis.MechanismNames {
			p(" %s |", statusCell(r.Status[m], r.Trials))
		}
		p("\n")
	}
	p("\n")

	p("### Actions behind them\n\n")
	p("Summed over each configuration's trials: step_policy entries written (by the runner for a static source, by the daemon otherwise), scheduler boosts, penalized enqueues and CPU time charged while penalized of step cgroups, steps whose peak thrash score reached their penalty score, daemon transitions (throttled, frozen, thawed), kills by cause, memory burst credit grants, memcg_agent_ops delays (full mode), and protections: memcg_agent_ops' below_low grants in full mode, steps given memory.low by the daemon in mainline mode.\n\n")
	p("| configuration | policy writes | boosts | penalties (ms penalized) | steps due a penalty | throttled | frozen | thawed | killed | bursts | BPF delays | protections (revoked) |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		c := r.Counts
		p("| %s | %d | %d | %d (%.0f) | %d | %d | %d | %d | %s | %d | %d | %d (%d) |\n", r.Config, c.PolicyWrites, c.Boosts, c.Penalties, c.PenalizedMs,
			c.PenaltyApplies, c.Throttles, c.Freezes, c.Thaws, kills(c.Kills), c.Bursts, c.BPFDelays, c.Protections, c.Revoked)
	}
	p("\n")

	controlPlane(b, s)

	var notes []string
	for _, r := range rows {
		for _, m := range analysis.MechanismNames {
			for _, st := range []analysis.Status{analysis.Missing, analysis.Unexpected, analysis.Idle} {
				if d := r.Details[m][st]; d != "" {
					notes = append(notes, fmt.Sprintf("%s, %s %s: %s", r.Config, m, st, d))
				}
			}
		}
	}
	if len(notes) > 0 {
		p("Why (first trial of each kind):\n\n")
		for _, n := range notes {
			p("- %s\n", n)
		}
		p("\n")
	}
}

func statusCell(st map[analysis.Status]int, trials int) string {
	if len(st) == 0 || st[analysis.Absent] == trials {
		return "-"
	}
	var parts []string
	for _, s := range []analysis.Status{analysis.Engaged, analysis.Idle, analysis.Missing, analysis.Unexpected} {
		if n := st[s]; n > 0 {
			x := fmt.Sprintf("%s %d", s, n)
			if s == analysis.Missing || s == analysis.Unexpected {
				x = "**" + x + "**"
			}
			parts = append(parts, x)
		}
	}
	return strings.Join(parts, ", ")
}

func kills(k map[string]int) string {
	if len(k) == 0 {
		return "0"
	}
	var keys []string
	for c := range k {
		keys = append(keys, c)
	}
	sort.Strings(keys)
	var parts []string
	for _, c := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", k[c], c))
	}
	return strings.Join(parts, ", ")
}

// notAsNamed maps each configuration whose counters withdraw its name to
// the reason, so a finding about it says so where it is read.
func notAsNamed(s *analysis.Summary) map[string]string {
	out := map[string]string{}
	for _, r := range s.MechanismTable() {
		if !r.Honest {
			out[r.Config] = strings.TrimPrefix(r.Verdict, "not as named: ")
		}
	}
	return out
}

// controlPlane writes what the enforcer itself cost the guest, per helper:
// CPU time until it was ready, from then to the measured phase (creating
// the trial's sessions and steps, and the warmup), and its share of the
// guest's CPUs over the measured phase and over the whole span after
// readiness, so an effect can be told apart from the enforcer's own load.
func controlPlane(b *bytes.Buffer, s *analysis.Summary) {
	cols := []struct{ head, metric string }{
		{"start-up cpu ms", "startup_cpu_ms"},
		{"setup cpu ms", "setup_cpu_ms"},
		{"measured phase % of guest", "measure_cpu_pct"},
		{"ready to end % of guest", "steady_cpu_pct"},
	}
	var lines []string
	for _, cfg := range s.Configs {
		for _, helper := range []string{"daemon", "scheduler"} {
			var cells []string
			any := false
			for _, c := range cols {
				var xs []float64
				for _, tr := range s.Trials {
					if v, ok := tr.Metrics[analysis.GroupMetric(helper, c.metric)]; ok && tr.Config == cfg {
						xs = append(xs, v)
					}
				}
				if len(xs) == 0 {
					cells = append(cells, "-")
					continue
				}
				any = true
				sort.Float64s(xs)
				cells = append(cells, fmt.Sprintf("%.3g (%.3g–%.3g)", xs[len(xs)/2], xs[0], xs[len(xs)-1]))
			}
			if any {
				lines = append(lines, fmt.Sprintf("| %s | %s | %s |", cfg, helper, strings.Join(cells, " | ")))
			}
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(b, "### Control-plane cost\n\nMedian (min–max) over every trial of the configuration, from /proc/PID/stat (10 ms resolution) at readiness, at the start and at the end of the measured phase. Setup is the trial's sessions and steps being created and the warmup; the runner does that work itself where no daemon runs.\n\n| configuration | helper |")
	for _, c := range cols {
		fmt.Fprintf(b, " %s |", c.head)
	}
	fmt.Fprintf(b, "\n|---|---|%s\n%s\n\n", strings.Repeat("---|", len(cols)), strings.Join(lines, "\n"))
}
