package report

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/agentcgroup/agentcgroup/harness/analysis"
)

// Markdown renders report.md. figs lists figure base names (without
// extension) written by Figures, in order.
func Markdown(s *analysis.Summary, figs []Figure) []byte {
	var b bytes.Buffer
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# Evaluation: %s\n\n", s.Scenario)
	if s.Description != "" {
		p("%s\n\n", s.Description)
	}
	provenance(&b, s)
	trials(&b, s)

	p("## Configurations\n\n")
	for _, cfg := range s.Configs {
		if why := s.Unavailable[cfg]; len(why) > 0 {
			p("- **%s: not fully in force.** %s\n", cfg, strings.Join(why, "; "))
		} else {
			p("- %s: ran as specified.\n", cfg)
		}
	}
	p("\n")

	verdicts(&b, s)

	for _, v := range s.Victims {
		p("## Victim `%s`: latency (ms)\n\n", v)
		p("Mean over repetitions of each trial's percentile (from its merged HdrHistogram), with a 95%% bootstrap interval over repetitions. Slowdown is the trial's mean (and p99) latency over the solo run's of the same configuration and repetition.\n\n")
		p("| neighbours | configuration | n | p50 | p95 | p99 | p99.9 | slowdown (mean) | slowdown (p99) |\n")
		p("|---|---|---|---|---|---|---|---|---|\n")
		for _, set := range s.Sets {
			for _, cfg := range s.Configs {
				r99 := s.Row(cfg, set, analysis.LatencyMetric(v, "p99_ms"))
				if r99 == nil {
					p("| %s | %s | 0 | no data | | | | | |\n", label(set), cfg)
					continue
				}
				p("| %s | %s | %d | %s | %s | %s | %s | %s | %s |\n", label(set), cfg, r99.Est.N,
					est(s, cfg, set, analysis.LatencyMetric(v, "p50_ms")),
					est(s, cfg, set, analysis.LatencyMetric(v, "p95_ms")),
					est(s, cfg, set, analysis.LatencyMetric(v, "p99_ms")),
					est(s, cfg, set, analysis.LatencyMetric(v, "p999_ms")),
					est(s, cfg, set, analysis.LatencyMetric(v, "slowdown_mean")),
					est(s, cfg, set, analysis.LatencyMetric(v, "slowdown_p99")))
			}
		}
		p("\n")
	}

	p("## memory.events per configuration\n\n")
	p("Counter increase between the snapshots before the neighbours start and after the victims finish, per trial, for the victims' and the neighbours' session cgroups (hierarchical counts).\n\n")
	p("| neighbours | configuration |")
	for _, role := range []string{analysis.RoleVictim, analysis.RoleNeighbour} {
		for _, k := range analysis.EventKeys {
			p(" %s %s |", role, k)
		}
	}
	p("\n|---|---|%s\n", strings.Repeat("---|", 2*len(analysis.EventKeys)))
	for _, set := range s.Sets {
		for _, cfg := range s.Configs {
			p("| %s | %s |", label(set), cfg)
			for _, role := range []string{analysis.RoleVictim, analysis.RoleNeighbour} {
				for _, k := range analysis.EventKeys {
					p(" %s |", est(s, cfg, set, analysis.GroupMetric(role, "mem."+k)))
				}
			}
			p("\n")
		}
	}
	p("\n")

	p("## Why tails moved: explanatory metrics\n\n")
	p("PSI as %% of the trial's wall time stalled (from the pressure files' total= counters); faults and reclaim from memory.stat; CPU time and throttling from cpu.stat. Victim = victims' session cgroup, neighbour = neighbours' session cgroup; daemon and scheduler CPU is their processes' user+system time over the trial.\n\n")
	cols := []struct{ head, metric string }{
		{"victim cpu some %", "victim.psi_cpu_some_pct"},
		{"victim cpu full %", "victim.psi_cpu_full_pct"},
		{"victim mem some %", "victim.psi_mem_some_pct"},
		{"victim mem full %", "victim.psi_mem_full_pct"},
		{"victim pgmajfault", "victim.pgmajfault"},
		{"victim pgscan", "victim.pgscan"},
		{"victim throttled ms", "victim.throttled_ms"},
		{"neighbour mem some %", "neighbour.psi_mem_some_pct"},
		{"neighbour pgmajfault", "neighbour.pgmajfault"},
		{"neighbour pgscan", "neighbour.pgscan"},
		{"neighbour pgsteal", "neighbour.pgsteal"},
		{"neighbour cpu ms", "neighbour.cpu_usage_ms"},
		{"neighbour throttled ms", "neighbour.throttled_ms"},
		{"system mem some %", "system.psi_mem_some_pct"},
		{"daemon cpu ms", "daemon.cpu_ms"},
		{"scheduler cpu ms", "scheduler.cpu_ms"},
	}
	p("| neighbours | configuration |")
	for _, c := range cols {
		p(" %s |", c.head)
	}
	p("\n|---|---|%s\n", strings.Repeat("---|", len(cols)))
	for _, set := range s.Sets {
		for _, cfg := range s.Configs {
			p("| %s | %s |", label(set), cfg)
			for _, c := range cols {
				p(" %s |", est(s, cfg, set, c.metric))
			}
			p("\n")
		}
	}
	p("\n")

	if len(figs) > 0 {
		p("## Figures\n\n")
		for _, f := range figs {
			p("- %s: [PNG](figures/%s.png), [SVG](figures/%s.svg)\n", f.Title, f.Name, f.Name)
		}
		p("\n")
	}
	p("## Method\n\n")
	p("Every trial boots a fresh guest. Trials run in a seeded random order, one repetition block at a time; every configuration of a repetition uses the same workload seed, so comparisons are paired. Percentiles come from the victims' HdrHistogram interval logs merged per trial. Intervals are percentile bootstraps (%d resamples, seeded per metric) over repetitions; with few repetitions they are rough. `agentbench figures` regenerates this file, summary.csv and figures/ from the raw trial data alone.\n", analysis.Resamples)
	return b.Bytes()
}

func provenance(b *bytes.Buffer, s *analysis.Summary) {
	pv := s.Provenance
	if pv == nil {
		fmt.Fprintf(b, "No provenance.json: where these numbers came from is unknown.\n\n")
		return
	}
	dirty := ""
	if pv.GitDirty {
		dirty = " (work tree had uncommitted changes)"
	}
	fmt.Fprintf(b, "| | |\n|---|---|\n")
	fmt.Fprintf(b, "| started | %s |\n", pv.Started.UTC().Format("2006-01-02 15:04:05 UTC"))
	fmt.Fprintf(b, "| commit | `%s`%s |\n", pv.GitCommit, dirty)
	fmt.Fprintf(b, "| scenario sha256 | `%s` |\n", short(pv.ScenarioSHA256))
	fmt.Fprintf(b, "| guest kernel | %s %s (pin `%s`) |\n", pv.Kernel.Name, pv.Kernel.Release, short(pv.Kernel.PinSHA256))
	fmt.Fprintf(b, "| qemu | %s |\n", pv.Qemu)
	fmt.Fprintf(b, "| accelerator | %s |\n", strings.Join(pv.Accelerators, ", "))
	fmt.Fprintf(b, "| host | %s, %d CPUs, Linux %s |\n", pv.HostCPU, pv.HostCPUs, pv.HostKernel)
	fmt.Fprintf(b, "| seed | %d |\n", pv.Seed)
	if len(s.HostLoads) > 0 {
		ls := append([]float64(nil), s.HostLoads...)
		sort.Float64s(ls)
		fmt.Fprintf(b, "| host load (1 min) at trial starts | median %.1f, max %.1f over %d boots |\n", ls[len(ls)/2], ls[len(ls)-1], len(ls))
	}
	b.WriteString("\n")
	if len(s.HostLoads) > 0 && pv.HostCPUs > 0 {
		ls := append([]float64(nil), s.HostLoads...)
		sort.Float64s(ls)
		if med := ls[len(ls)/2]; med > float64(pv.HostCPUs) {
			fmt.Fprintf(b, "**The host was oversubscribed** (median load %.1f on %d CPUs): guests lost CPU time to other work, which adds stalls to every configuration, solo runs included. Treat absolute latencies as noisy and look at differences within this run.\n\n", med, pv.HostCPUs)
		}
	}
	for _, a := range pv.Accelerators {
		if a == "tcg" {
			fmt.Fprintf(b, "Guests ran under TCG (software emulation): CPU-bound work is near native, kernel-heavy work (faults, fork, reclaim) is several times slower. Compare configurations within this run, not absolute times across accelerators.\n\n")
		}
	}
}

func trials(b *bytes.Buffer, s *analysis.Summary) {
	fmt.Fprintf(b, "## Trials\n\n%d planned, %d usable, %d failed, %d skipped, %d not run.\n\n",
		s.Planned, len(s.Trials), len(s.Failed), len(s.Skipped), len(s.Missing))
	notes(b, "failed", s.Failed)
	notes(b, "skipped", s.Skipped)
	if len(s.Missing) > 0 {
		fmt.Fprintf(b, "- not run (interrupted; `agentbench eval --resume` finishes them): %s\n", strings.Join(s.Missing, ", "))
	}
	if len(s.Failed)+len(s.Skipped)+len(s.Missing) > 0 {
		b.WriteString("\n")
	}
}

// notes lists failed or skipped trials grouped by reason (with the trial
// id taken out of the reason so identical causes group together).
func notes(b *bytes.Buffer, what string, ns []analysis.TrialNote) {
	var order []string
	ids := map[string][]string{}
	for _, n := range ns {
		r := oneLine(strings.ReplaceAll(n.Reason, n.ID, "<id>"))
		if _, ok := ids[r]; !ok {
			order = append(order, r)
		}
		ids[r] = append(ids[r], "`"+n.ID+"`")
	}
	for _, r := range order {
		fmt.Fprintf(b, "- %s %s: %s\n", what, strings.Join(ids[r], ", "), r)
	}
}

// verdicts states plainly, per victim and neighbour set, whether the
// neighbours hurt the victim under baseline and whether each configuration
// improves on baseline's p99 beyond the intervals' overlap.
func verdicts(b *bytes.Buffer, s *analysis.Summary) {
	fmt.Fprintf(b, "## Findings\n\n")
	any := false
	for _, v := range s.Victims {
		for _, set := range s.Sets {
			if set == analysis.Solo {
				continue
			}
			if sd := s.Row("baseline", set, analysis.LatencyMetric(v, "slowdown_mean")); sd != nil && sd.Est.Valid() {
				any = true
				switch {
				case sd.Est.Lo > 1:
					fmt.Fprintf(b, "- `%s` vs %s, baseline: the neighbours slow the victim, mean-latency slowdown %s (interval above 1).\n", v, set, fmtEst(sd.Est))
				case sd.Est.Hi < 1:
					fmt.Fprintf(b, "- `%s` vs %s, baseline: the victim ran faster than solo, slowdown %s; the neighbours did not hurt it.\n", v, set, fmtEst(sd.Est))
				default:
					fmt.Fprintf(b, "- `%s` vs %s, baseline: no clear slowdown, %s (interval includes 1).\n", v, set, fmtEst(sd.Est))
				}
			}
			base := s.Row("baseline", set, analysis.LatencyMetric(v, "p99_ms"))
			if base == nil || !base.Est.Valid() {
				continue
			}
			for _, cfg := range s.Configs {
				if cfg == "baseline" {
					continue
				}
				r := s.Row(cfg, set, analysis.LatencyMetric(v, "p99_ms"))
				if r == nil || !r.Est.Valid() {
					fmt.Fprintf(b, "- `%s` vs %s, %s: no data.\n", v, set, cfg)
					continue
				}
				any = true
				caveat := ""
				if len(s.Unavailable[cfg]) > 0 {
					caveat = " (configuration not fully in force, see above)"
				}
				switch {
				case r.Est.Hi < base.Est.Lo:
					fmt.Fprintf(b, "- `%s` vs %s, %s: p99 %s ms beats baseline %s ms.%s\n", v, set, cfg, fmtEst(r.Est), fmtEst(base.Est), caveat)
				case r.Est.Lo > base.Est.Hi:
					fmt.Fprintf(b, "- `%s` vs %s, %s: p99 %s ms is **worse** than baseline %s ms.%s\n", v, set, cfg, fmtEst(r.Est), fmtEst(base.Est), caveat)
				default:
					not := "does not beat"
					if cfg == "joint" {
						not = "**does not beat**"
					}
					fmt.Fprintf(b, "- `%s` vs %s, %s: p99 %s ms %s baseline %s ms (intervals overlap).%s\n", v, set, cfg, fmtEst(r.Est), not, fmtEst(base.Est), caveat)
				}
			}
		}
	}
	if !any {
		fmt.Fprintf(b, "No cell has enough data for a finding.\n")
	}
	fmt.Fprintf(b, "\n")
}

func est(s *analysis.Summary, cfg, set, metric string) string {
	r := s.Row(cfg, set, metric)
	if r == nil || !r.Est.Valid() {
		return "–"
	}
	return fmtEst(r.Est)
}

func fmtEst(e analysis.Estimate) string {
	if e.N <= 1 || (sig(e.Lo) == sig(e.Mean) && sig(e.Hi) == sig(e.Mean)) {
		return sig(e.Mean)
	}
	return fmt.Sprintf("%s [%s, %s]", sig(e.Mean), sig(e.Lo), sig(e.Hi))
}

// sig prints three significant digits without exponent for table use.
func sig(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return "NaN"
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
