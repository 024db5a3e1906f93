package report

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
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

	configurations(&b, s)

	verdicts(&b, s)

	for _, v := range s.Victims {
		p("## Victim `%s`: latency (ms)\n\n", v)
		p("Mean over repetitions of each trial's percentile (from its merged HdrHistogram). %s Slowdown is the trial's mean (and p99) latency over the solo run's of the same configuration and repetition.\n\n", intervalLegend)
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

	pathologies(&b, s)

	fidelity(&b, s)

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

	sweepSection(&b, s, figs)

	if len(figs) > 0 {
		p("## Figures\n\n")
		for _, f := range figs {
			p("- %s: [PNG](figures/%s.png), [SVG](figures/%s.svg)\n", f.Title, f.Name, f.Name)
		}
		p("\n")
	}
	method(&b)
	return b.Bytes()
}

// pathologies is the table for the two ways one half of the stack fails
// alone: the victims' survival (OOM kills end sessions), their major
// faults and memory stalls, the CPU the throttled neighbours burnt in the
// kernel while over memory.high, and the victims' allocation latency,
// beside their tail latencies.
func pathologies(b *bytes.Buffer, s *analysis.Summary) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	var alloc []string
	for _, v := range s.Victims {
		for _, r := range s.Rows {
			if r.Metric == analysis.LatencyMetric(v, "alloc_p99_ms") {
				alloc = append(alloc, v)
				break
			}
		}
	}
	p("## Memory pathologies: survival, faults, reclaim\n\n")
	p("Per cell, mean over repetitions. *Survived* is the fraction of victim sessions that finished: neither ended by the OOM killer nor stalled past the deadline without a result (either is a failed session; its trial stays usable, and it has no latencies, so the p99 columns cover the surviving repetitions only and must be read with survival). Major faults and memory stall (PSI some/full, %% of wall time) are the victims' session cgroup's. *Neighbour sys ms over high* is the neighbours' cpu.stat system time summed over the timeline intervals in which a neighbour was over its memory.high (memory.current above it at either end, or memory.events high grew) during the measured phase: the kernel time charged to the throttled step, which is direct reclaim, zram compression and the refaults of what reclaim took, plus any other kernel work it did in those intervals; *s over high* is how long that was. Allocation latency is the victims' probe: wall time to map and fault in a fixed size per request.\n\n")
	p("| neighbours | configuration | n | survived |")
	for _, v := range s.Victims {
		p(" `%s` p99 ms |", v)
	}
	p(" victim pgmajfault | victim mem some %% | victim mem full %% | neighbour sys ms over high | neighbour s over high | neighbour OOM kills |")
	for _, v := range alloc {
		p(" `%s` alloc p95 ms | `%s` alloc p99 ms |", v, v)
	}
	p("\n|---|---|---|---|%s\n", strings.Repeat("---|", len(s.Victims)+6+2*len(alloc)))
	for _, set := range s.Sets {
		for _, cfg := range s.Configs {
			n := 0
			if r := s.Row(cfg, set, analysis.GroupMetric(analysis.RoleVictim, "survived")); r != nil {
				n = r.Est.N
			}
			p("| %s | %s | %d | %s |", label(set), cfg, n, est(s, cfg, set, analysis.GroupMetric(analysis.RoleVictim, "survived")))
			for _, v := range s.Victims {
				p(" %s |", est(s, cfg, set, analysis.LatencyMetric(v, "p99_ms")))
			}
			for _, m := range []string{"victim.pgmajfault", "victim.psi_mem_some_pct", "victim.psi_mem_full_pct",
				"neighbour.sys_over_high_ms", "neighbour.over_high_s", "neighbour.oom_killed"} {
				p(" %s |", est(s, cfg, set, m))
			}
			for _, v := range alloc {
				p(" %s | %s |", est(s, cfg, set, analysis.LatencyMetric(v, "alloc_p95_ms")), est(s, cfg, set, analysis.LatencyMetric(v, "alloc_p99_ms")))
			}
			p("\n")
		}
	}
	p("\n")
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
	for _, r := range pv.Resumed {
		c := "commit unrecorded"
		if r.GitCommit != "" {
			c = "`" + r.GitCommit + "`"
			if r.GitDirty {
				c += " (uncommitted changes)"
			}
		}
		fmt.Fprintf(b, "| resumed | %s at %s |\n", r.At.UTC().Format("2006-01-02 15:04:05 UTC"), c)
	}
	if len(s.TrialCommits) > 1 {
		fmt.Fprintf(b, "| trials per commit | %s |\n", trialCommits(s.TrialCommits))
	}
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
	if len(s.VCPUWait) > 0 {
		med, hi := shareStats(s.VCPUWait)
		fmt.Fprintf(b, "| vCPU wait for a host CPU, share of runnable time | median %.1f%%, max %.1f%% over %d trials |\n", 100*med, 100*hi, len(s.VCPUWait))
	}
	b.WriteString("\n")
	vcpuWait(b, s)
	if len(s.VCPUWait) > 0 {
		if med, _ := shareStats(s.VCPUWait); med > disturbedVCPUWait {
			fmt.Fprintf(b, "**The host kept the guest waiting** (median vCPU wait %.1f%% of runnable time, above the %.0f%% an otherwise idle host shows): guests lost CPU time to other work, which adds stalls to every configuration, solo runs included. Treat absolute latencies as noisy and look at differences within this run.\n\n", 100*med, 100*disturbedVCPUWait)
		}
	} else if len(s.HostLoads) > 0 && pv.HostCPUs > 0 {
		// Runs recorded before the vCPU wait was measured: the load
		// average is the only sign, and it counts the guest's own vCPUs.
		ls := append([]float64(nil), s.HostLoads...)
		sort.Float64s(ls)
		if med := ls[len(ls)/2]; med > float64(pv.HostCPUs) {
			fmt.Fprintf(b, "**The host was oversubscribed** (median load %.1f on %d CPUs): guests lost CPU time to other work, which adds stalls to every configuration, solo runs included. Treat absolute latencies as noisy and look at differences within this run.\n\n", med, pv.HostCPUs)
		}
	}
	if len(s.TrialCommits) > 1 {
		fmt.Fprintf(b, "**The trials ran on %d versions of the code** (the run was resumed after it moved on): a difference between configurations is the configurations' only where the changes in between leave the guest's behaviour alone. `outcome.json` of each trial names its commit.\n\n", len(s.TrialCommits))
	}
	for _, a := range pv.Accelerators {
		if a == "tcg" {
			fmt.Fprintf(b, "Guests ran under TCG (software emulation): CPU-bound work is near native, kernel-heavy work (faults, fork, reclaim) is several times slower. Compare configurations within this run, not absolute times across accelerators.\n\n")
		}
	}
}

// disturbedVCPUWait is the median vCPU wait share above which a run is
// flagged as disturbed by other work on the host. A 2-vCPU guest on an
// otherwise idle 2-core host waited 6-7% of its runnable time (qemu's own
// threads share the cores with the vCPUs), so 10% is clearly more than
// the guest itself causes.
const disturbedVCPUWait = 0.10

// shareStats is the (upper) median and the maximum of the trials' shares.
func shareStats(ts []analysis.TrialShare) (median, max float64) {
	ws := make([]float64, len(ts))
	for i, t := range ts {
		ws[i] = t.Share
	}
	sort.Float64s(ws)
	return ws[len(ws)/2], ws[len(ws)-1]
}

// vcpuWait names the trials whose guests lost the most time to the host.
// A vCPU that waits for a host CPU stops the guest's clock for nobody: the
// guest's work simply takes longer, in whatever it was doing, so these
// trials' latencies carry the host's stalls.
func vcpuWait(b *bytes.Buffer, s *analysis.Summary) {
	if len(s.VCPUWait) == 0 {
		return
	}
	ws := append([]analysis.TrialShare(nil), s.VCPUWait...)
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].Share > ws[j].Share })
	ws = ws[:min(len(ws), 5)]
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = fmt.Sprintf("`%s` %.1f%%", w.ID, 100*w.Share)
	}
	fmt.Fprintf(b, "The host's interference, measured per trial from the vCPU threads' run delay (time runnable but waiting for a host CPU, which the guest cannot see: whatever it was doing just takes longer) while the job ran. Highest: %s.\n\n", strings.Join(parts, ", "))
}

// trialCommits lists the versions of the code that ran trials, most
// trials first.
func trialCommits(m map[analysis.CodeVersion]int) string {
	vs := slices.Collect(maps.Keys(m))
	slices.SortFunc(vs, func(a, b analysis.CodeVersion) int {
		if c := cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a.Commit, b.Commit)); c != 0 || a.Dirty == b.Dirty {
			return c
		}
		if a.Dirty {
			return 1 // the committed tree first
		}
		return -1
	})
	parts := make([]string, len(vs))
	for i, v := range vs {
		name := "unrecorded"
		if v.Commit != "" {
			name = "`" + short(v.Commit) + "`"
		}
		if v.Dirty {
			name += " (uncommitted changes)"
		}
		parts[i] = fmt.Sprintf("%s: %d", name, m[v])
	}
	return strings.Join(parts, ", ")
}

func trials(b *bytes.Buffer, s *analysis.Summary) {
	fmt.Fprintf(b, "## Trials\n\n%d planned, %d usable, %d failed, %d skipped, %d not run.\n\n",
		s.Planned, len(s.Trials), len(s.Failed), len(s.Skipped), len(s.Missing))
	var killed, stalled []string
	for _, tr := range s.Trials {
		for _, v := range tr.Raw.Manifest.Victims {
			switch {
			case v.OOMKilled:
				killed = append(killed, fmt.Sprintf("`%s` (%s)", tr.ID, v.Name))
			case v.Stalled:
				stalled = append(stalled, fmt.Sprintf("`%s` (%s)", tr.ID, v.Name))
			}
		}
	}
	if len(killed) > 0 {
		fmt.Fprintf(b, "The OOM killer ended %d victim session(s), counted as failed sessions in usable trials (see survival under Memory pathologies): %s.\n\n", len(killed), strings.Join(killed, ", "))
	}
	if len(stalled) > 0 {
		fmt.Fprintf(b, "%d victim session(s) had not finished their measured phase by the deadline (the phase plus a grace) and were killed without a result, counted as failed sessions in usable trials: %s.\n\n", len(stalled), strings.Join(stalled, ", "))
	}
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
// neighbours hurt the victim under baseline and how each configuration's
// p99 compares with baseline's and joint's with each mechanism alone. The
// wording follows analysis.ComparePaired's verdict: "beats" only with
// analysis.MinReps repetitions and a criterion met, "indicative" below.
func verdicts(b *bytes.Buffer, s *analysis.Summary) {
	fmt.Fprintf(b, "## Findings\n\n")
	var metrics []string
	for _, v := range s.Victims {
		metrics = append(metrics, analysis.LatencyMetric(v, "p99_ms"))
	}
	comps := s.CompareFamily(metrics)
	family := 0
	for _, c := range comps {
		family = max(family, c.Family)
	}
	fmt.Fprintf(b, "A configuration *beats* another only with at least %d repetitions and either non-overlapping 95%% intervals or a paired sign-flip test at p < %g", analysis.MinReps, analysis.PairedAlpha)
	if family > 1 {
		fmt.Fprintf(b, " after Holm's adjustment for the %d paired tests below", family)
	}
	fmt.Fprintf(b, "; with fewer repetitions a finding is indicative only (see Method).")
	if s.Sweep != nil {
		fmt.Fprintf(b, " Only configuration cells are compared here; the sweep cells are under Parameter sweep.")
	}
	fmt.Fprintf(b, "\n\n")
	any := false
	for _, v := range s.Victims {
		for _, set := range s.Sets {
			if set == analysis.Solo {
				continue
			}
			if sd := s.Row("baseline", set, analysis.LatencyMetric(v, "slowdown_mean")); sd != nil && sd.Est.Valid() {
				any = true
				fmt.Fprintf(b, "- `%s` vs %s, baseline: %s\n", v, set, slowdownFinding(sd.Est))
			}
			metric := analysis.LatencyMetric(v, "p99_ms")
			for _, c := range comps {
				if c.Metric != metric || c.Neighbour != set {
					continue
				}
				if c.Verdict == analysis.VerdictNoData {
					why := "no data"
					if c.AEst.Valid() {
						why = c.Method
					}
					fmt.Fprintf(b, "- `%s` vs %s, %s: %s.\n", v, set, c.A, why)
					continue
				}
				any = true
				fmt.Fprintf(b, "- `%s` vs %s, %s\n", v, set, comparisonFinding(s, c))
			}
		}
	}
	if !any {
		fmt.Fprintf(b, "No cell has enough data for a finding.\n")
	}
	fmt.Fprintf(b, "\n")
}

// slowdownFinding words baseline's slowdown against solo: a claim from a
// confidence interval, a description of every repetition from a range.
func slowdownFinding(e analysis.Estimate) string {
	if !e.IsCI() {
		ind := fmt.Sprintf("indicative only: %s", reps(e.N))
		switch {
		case e.Lo > 1:
			return fmt.Sprintf("the neighbours slowed the victim %s, mean-latency slowdown %s; %s.", every(e.N), fmtEst(e), ind)
		case e.Hi < 1:
			return fmt.Sprintf("the victim ran faster than solo %s, slowdown %s; %s.", every(e.N), fmtEst(e), ind)
		default:
			return fmt.Sprintf("no consistent slowdown, %s; %s.", fmtEst(e), ind)
		}
	}
	switch {
	case e.Lo > 1:
		return fmt.Sprintf("the neighbours slow the victim, mean-latency slowdown %s (interval above 1).", fmtEst(e))
	case e.Hi < 1:
		return fmt.Sprintf("the victim ran faster than solo, slowdown %s; the neighbours did not hurt it.", fmtEst(e))
	default:
		return fmt.Sprintf("no clear slowdown, %s (interval includes 1).", fmtEst(e))
	}
}

// comparisonFinding words one paired comparison of p99s (after the
// "victim vs set, " prefix).
func comparisonFinding(s *analysis.Summary, c analysis.Comparison) string {
	var caveat string
	notNamed := notAsNamed(s)
	for _, cfg := range []string{c.A, c.B} {
		if len(s.Unavailable[cfg]) > 0 {
			caveat += fmt.Sprintf(" (%s not fully in force, see above)", cfg)
		}
		if why, ok := notNamed[cfg]; ok {
			caveat += fmt.Sprintf(" **%s is not what its name says: %s** (see Configurations).", cfg, why)
		}
	}
	if len(c.Dropped) > 0 {
		ids := make([]string, len(c.Dropped))
		for i, r := range c.Dropped {
			ids[i] = fmt.Sprintf("r%02d", r)
		}
		what := "Repetition"
		if len(ids) > 1 {
			what = "Repetitions"
		}
		caveat += fmt.Sprintf(" %s %s dropped from the pairing: no usable trial on one side.", what, strings.Join(ids, ", "))
	}
	effect := fmt.Sprintf("paired p99 ratio %s/%s %s", c.A, c.B, fmtEst(c.Effect))
	if c.Scale == analysis.ScaleDifference {
		effect = fmt.Sprintf("paired p99 difference %s−%s %s ms", c.A, c.B, fmtEst(c.Effect))
	}
	cells := func(verb string) string {
		return fmt.Sprintf("%s: p99 %s ms %s %s %s ms", c.A, fmtEst(c.AEst), verb, c.B, fmtEst(c.BEst))
	}
	switch c.Verdict {
	case analysis.VerdictBeats:
		return fmt.Sprintf("%s: %s; %s.%s", cells("beats"), effect, c.Method, caveat)
	case analysis.VerdictWorse:
		return fmt.Sprintf("%s: %s; %s.%s", cells("is **worse** than"), effect, c.Method, caveat)
	case analysis.VerdictNotEstablished:
		not := "does not beat"
		if strings.HasPrefix(c.A, "joint") {
			not = "**does not beat**"
		}
		return fmt.Sprintf("%s: %s; %s.%s", cells(not), effect, c.Method, caveat)
	}
	// Indicative: where each repetition went, never a verdict.
	var dir string
	switch n := c.Pairs; {
	case c.Lower == n:
		dir = "lower " + every(n)
	case c.Higher == n:
		dir = "higher " + every(n)
	case c.Lower+c.Higher == 0:
		dir = "equal " + every(n)
	default:
		dir = fmt.Sprintf("lower in %d, higher in %d of %d repetitions", c.Lower, c.Higher, n)
	}
	return fmt.Sprintf("%s: %s, %s. Indicative only: %s, no verdict below %d.%s",
		cells("vs"), dir, effect, reps(c.Pairs), analysis.MinReps, caveat)
}

func every(n int) string {
	switch n {
	case 1:
		return "in its only repetition"
	case 2:
		return "in both repetitions"
	}
	return fmt.Sprintf("in all %d repetitions", n)
}

func reps(n int) string {
	if n == 1 {
		return "1 rep"
	}
	return fmt.Sprintf("%d reps", n)
}

// intervalLegend explains the two interval notations fmtEst writes.
var intervalLegend = fmt.Sprintf("`[lo, hi]` is a 95%% bootstrap confidence interval over repetitions (cells with %d or more); `(range lo–hi)` is the lowest and highest repetition (cells with fewer), not a confidence interval.", analysis.MinReps)

// method is the report's Method section: how cells, intervals and
// comparisons were computed.
func method(b *bytes.Buffer) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p("## Method\n\n")
	p("Every trial boots a fresh guest. Trials run in a seeded random order, one repetition block at a time; every configuration of a repetition uses the same workload seed, so comparisons are paired. Percentiles come from the victims' HdrHistogram interval logs merged per trial.\n\n")
	p("**Intervals.** A cell is the mean over repetitions. With at least %d repetitions it shows `mean [lo, hi]`, a 95%% percentile-bootstrap confidence interval of that mean (%d resamples, seeded per metric). With 2 to %d it shows `mean (range lo–hi)`: the lowest and highest repetition, a description of the data and not a confidence interval (a bootstrap over so few values only restates them; over two it is exactly their range). A single repetition shows its value alone. summary.csv names the kind in its `interval` column (`%s`, `%s`, `%s`), and the figures' error bars follow the same rule and say so in their titles.\n\n",
		analysis.MinReps, analysis.Resamples, analysis.MinReps-1, analysis.IntervalCI95, analysis.IntervalRange, analysis.IntervalPoint)
	p("**Comparisons.** Configurations are compared on each victim's p99 repetition by repetition: a pair is configuration A's and B's trial of the same repetition and neighbour set, and its effect is the ratio A/B; the paired ratio shown is their geometric mean, with an interval of the same kind as a cell's. A repetition with a usable trial on one side only is dropped from the pairing and named. A *beats* B only with at least %d repetitions and either non-overlapping 95%% intervals of the two cells or an exact two-sided sign-flip permutation test of the mean per-repetition log ratio at p < %g, after Holm's step-down adjustment over all the paired tests in Findings (so that with no effect anywhere, the chance that any of them claims one stays at %g); *worse* is the mirror image; otherwise A *does not beat* B. Below %d repetitions a finding states in how many repetitions A was lower and is marked indicative only.\n\n",
		analysis.MinReps, analysis.PairedAlpha, analysis.PairedAlpha, analysis.MinReps)
	p("**Why the sign-flip test.** If a configuration has no effect, A's and B's trials of a repetition are exchangeable (same seed, random order), so each log ratio is as likely to carry either sign. Enumerating all 2^n sign assignments gives an exact p-value at any n without assuming normality, and unlike the sign test or Wilcoxon's ranks it keeps how large each pair's difference was. The bootstrap interval of the paired ratio shows the effect's size but does not decide, because with 5 to 10 pairs a percentile bootstrap covers less than 95%%: 5 pairs that all point the same way always give an interval excluding 1, which happens 1 time in 16 with no effect at all. The test's smallest attainable p with n pairs is 2/2^n, so 5 pairs cannot reach %g even alone, and Holm asks the smallest of k tests for %g/k (6 pairs suffice for one test, 10 for twelve). At 5 to 9 repetitions a verdict therefore usually rests on non-overlapping intervals, which are not adjusted for the number of comparisons: with no effect, two 95%% percentile-bootstrap intervals of 5 repetitions fail to overlap about 1 time in 20, of 10 repetitions about 1 in 50. A lone *beats* among many comparisons deserves that caution.\n\n",
		analysis.PairedAlpha, analysis.PairedAlpha)
	p("`agentbench figures` regenerates this file, summary.csv and figures/ from the raw trial data alone.\n")
}

func est(s *analysis.Summary, cfg, set, metric string) string {
	r := s.Row(cfg, set, metric)
	if r == nil || !r.Est.Valid() {
		return "–"
	}
	return fmtEst(r.Est)
}

// fmtEst writes a confidence interval as "mean [lo, hi]" and a range (too
// few repetitions for an interval) as "mean (range lo–hi)", so a reader
// never takes one for the other.
func fmtEst(e analysis.Estimate) string {
	if e.N <= 1 || (sig(e.Lo) == sig(e.Mean) && sig(e.Hi) == sig(e.Mean)) {
		return sig(e.Mean)
	}
	if !e.IsCI() {
		return fmt.Sprintf("%s (range %s–%s)", sig(e.Mean), sig(e.Lo), sig(e.Hi))
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
