package report_test

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/harness/analysis"
	"github.com/agentcgroup/agentcgroup/harness/analysis/analysistest"
	"github.com/agentcgroup/agentcgroup/harness/plan"
	"github.com/agentcgroup/agentcgroup/harness/report"
	"github.com/agentcgroup/agentcgroup/harness/results"
)

// snapshot reads every derived file of a run.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, f := range []string{results.SummaryFile, results.ReportFile} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		out[f] = b
	}
	figs, _ := filepath.Glob(filepath.Join(dir, results.FiguresDir, "*"))
	for _, f := range figs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out["figures/"+filepath.Base(f)] = b
	}
	return out
}

func TestReportDeterministicAndComplete(t *testing.T) {
	dir, err := analysistest.WriteRun(t.TempDir(), 3, analysistest.Default())
	if err != nil {
		t.Fatal(err)
	}
	gen := func() map[string][]byte {
		s, err := analysis.Analyze(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := report.Write(s); err != nil {
			t.Fatal(err)
		}
		return snapshot(t, dir)
	}
	a, b := gen(), gen()
	if len(a) != len(b) {
		t.Fatalf("file sets differ: %d vs %d", len(a), len(b))
	}
	var names []string
	for n := range a {
		names = append(names, n)
		if !bytes.Equal(a[n], b[n]) {
			t.Errorf("%s differs between two regenerations", n)
		}
	}
	sort.Strings(names)
	for _, want := range []string{
		"figures/cdf-chat-cpu.png", "figures/cdf-chat-cpu.svg", "figures/cdf-chat-solo.svg",
		"figures/tail-chat-p99.png", "figures/tail-chat-p99.9.svg", "figures/slowdown-chat.png",
		"figures/memory-events-neighbour.png", "figures/timeline.svg", "figures/timeline.png",
	} {
		if _, ok := a[want]; !ok {
			t.Errorf("missing %s (have %v)", want, names)
		}
	}
	md := string(a[results.ReportFile])
	for _, want := range []string{
		"the neighbours slowed the victim in all 3 repetitions", "indicative only: 3 reps",
		"| cpu | baseline | 3 |", "(range ", "memory.events per configuration", "victim mem some %",
		"figures/timeline.png",
		"| host load (1 min) at trial starts | median 3.5, max 4.5 over 36 boots |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	csv := string(a[results.SummaryFile])
	if !strings.HasPrefix(csv, "scenario,config,neighbour,metric,n,mean,lo,hi,interval,values\n") ||
		!strings.Contains(csv, "synth,baseline,cpu,chat.p99_ms,3,") {
		t.Errorf("summary.csv malformed:\n%.400s", csv)
	}
}

// findings returns the report's finding lines.
func findings(md string) []string {
	sec := md[strings.Index(md, "## Findings"):]
	sec = sec[:strings.Index(sec, "\n## ")]
	var out []string
	for _, l := range strings.Split(sec, "\n") {
		if strings.HasPrefix(l, "- ") {
			out = append(out, l)
		}
	}
	return out
}

// csvIntervals maps "config,neighbour,metric" to summary.csv's interval
// column.
func csvIntervals(t *testing.T, csv string) map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(csv), "\n")
	head := strings.Split(lines[0], ",")
	col := -1
	for i, h := range head {
		if h == "interval" {
			col = i
		}
	}
	if col < 0 {
		t.Fatalf("summary.csv has no interval column: %s", lines[0])
	}
	out := map[string]string{}
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		out[f[1]+","+f[2]+","+f[3]] = f[col]
	}
	return out
}

func write(t *testing.T, reps int, m analysistest.Model) (md, csv string, figs map[string][]byte) {
	t.Helper()
	dir, err := analysistest.WriteRun(t.TempDir(), reps, m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := analysis.Analyze(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := report.Write(s); err != nil {
		t.Fatal(err)
	}
	all := snapshot(t, dir)
	return string(all[results.ReportFile]), string(all[results.SummaryFile]), all
}

// The smoke scenario's two repetitions: a clear effect is reported as a
// range, per repetition, and never as a win.
func TestReportTwoRepsIndicative(t *testing.T) {
	md, csv, figs := write(t, 2, analysistest.Default())
	fs := findings(md)
	if len(fs) == 0 {
		t.Fatalf("no findings:\n%s", md)
	}
	for _, f := range fs {
		if strings.Contains(f, "beat") || strings.Contains(f, "worse") {
			t.Errorf("2 repetitions give a verdict: %s", f)
		}
		if !strings.Contains(f, "ndicative only: 2 reps") {
			t.Errorf("finding not marked indicative: %s", f)
		}
	}
	for _, want := range []string{
		"- `chat` vs cpu, cpu-only: p99 ",
		"ms: lower in both repetitions, paired p99 ratio cpu-only/baseline ",
		"- `chat` vs cpu, joint: p99 ",
		"Indicative only: 2 reps, no verdict below 5.",
		"the neighbours slowed the victim in both repetitions",
	} {
		if !strings.Contains(strings.Join(fs, "\n"), want) {
			t.Errorf("findings lack %q:\n%s", want, strings.Join(fs, "\n"))
		}
	}
	if !strings.Contains(md, "| cpu | baseline | 2 | ") || !strings.Contains(md, "(range ") || strings.Contains(md, "| cpu | baseline | 2 | 3.") && !strings.Contains(md, "(range") {
		t.Errorf("latency table does not show ranges")
	}
	for _, want := range []string{"**Intervals.**", "not a confidence interval", "sign-flip", "at least 5 repetitions"} {
		if !strings.Contains(md, want) {
			t.Errorf("method section lacks %q", want)
		}
	}
	iv := csvIntervals(t, csv)
	if iv["baseline,cpu,chat.p99_ms"] != "range" || iv["joint,mem,chat.slowdown_mean"] != "range" {
		t.Errorf("interval column: p99 %q, slowdown %q", iv["baseline,cpu,chat.p99_ms"], iv["joint,mem,chat.slowdown_mean"])
	}
	for _, f := range []string{"figures/tail-chat-p99.svg", "figures/slowdown-chat.svg", "figures/memory-events-neighbour.svg"} {
		if !strings.Contains(string(figs[f]), "min-max range of n &lt; 5 reps, not a CI") {
			t.Errorf("%s does not say its bars are ranges", f)
		}
	}
	if !strings.Contains(md, "chat p99 per neighbour set; bars: min-max range of n < 5 reps, not a CI") {
		t.Errorf("figure list does not say the bars are ranges")
	}
}

// Six repetitions with a clear effect, on a host whose load differs
// between repetition blocks: cpu-only and joint beat baseline, by the
// paired test as well as the intervals, and the intervals are CIs.
func TestReportSixRepsClearEffect(t *testing.T) {
	m := analysistest.Default()
	m.RepNoise, m.TrialNoise = 0.3, 0.03
	md, csv, figs := write(t, 6, m)
	all := strings.Join(findings(md), "\n")
	for _, want := range []string{
		"- `chat` vs cpu, baseline: the neighbours slow the victim, mean-latency slowdown ",
		"- `chat` vs cpu, cpu-only: p99 ",
		"ms beats baseline ",
		"paired p99 ratio joint/baseline ",
		"paired sign-flip p = 0.031 over 6 pairs, 0.31 after Holm's adjustment for 10 comparisons",
		// mem-only is no better than baseline in the model.
		"- `chat` vs cpu, mem-only: p99 ",
		"ms does not beat baseline ",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("findings lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "ndicative") || strings.Contains(all, "(range") {
		t.Errorf("6 repetitions reported as indicative:\n%s", all)
	}
	iv := csvIntervals(t, csv)
	if iv["baseline,cpu,chat.p99_ms"] != "ci95-bootstrap" {
		t.Errorf("interval column = %q", iv["baseline,cpu,chat.p99_ms"])
	}
	if !strings.Contains(string(figs["figures/tail-chat-p99.svg"]), "bars: 95% bootstrap CI") {
		t.Errorf("tail figure does not say its bars are CIs")
	}
}

// A failed trial drops its repetition from the pairing, and the report
// says so; with 5 pairs left the paired test alone cannot decide.
func TestReportDropsUnpairedRepetition(t *testing.T) {
	m := analysistest.Default()
	m.RepNoise, m.TrialNoise = 0.3, 0.03
	m.Fail = map[string]bool{"joint.cpu.r02": true}
	md, _, _ := write(t, 6, m)
	var line string
	for _, f := range findings(md) {
		if strings.HasPrefix(f, "- `chat` vs cpu, joint: p99 ") && strings.Contains(f, " baseline ") {
			line = f
		}
	}
	for _, want := range []string{"over 5 pairs, ", "(5 pairs cannot reach p < 0.05)", "Repetition r02 dropped from the pairing: no usable trial on one side."} {
		if !strings.Contains(line, want) {
			t.Errorf("joint vs baseline lacks %q: %s", want, line)
		}
	}
}

// When joint does not beat baseline, or cpu-only, the report says so, with
// the paired ratio and its interval.
func TestReportSaysWhenJointDoesNotWin(t *testing.T) {
	m := analysistest.Default()
	m.LatencyUS = func(cfg, set string) (float64, float64) {
		if set == "none" {
			return 2000, 3
		}
		return 3000, 10 // every configuration equally hurt
	}
	m.TrialNoise = 0.05
	s := analysistest.Analyzed(t, 6, m)
	md := string(report.Markdown(s, nil))
	all := strings.Join(findings(md), "\n")
	for _, want := range []string{
		"- `chat` vs cpu, joint: p99 ", "ms **does not beat** baseline ", "ms **does not beat** cpu-only ",
		"paired p99 ratio joint/cpu-only ", "95% intervals overlap; paired sign-flip p = ",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("findings lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, " beats ") || strings.Contains(all, "worse") {
		t.Errorf("no effect, yet a verdict:\n%s", all)
	}
}

// A configuration that could not run is labelled.
func TestReportLabelsUnavailable(t *testing.T) {
	dir, err := analysistest.WriteRun(t.TempDir(), 2, analysistest.Default())
	if err != nil {
		t.Fatal(err)
	}
	run, _ := results.Open(dir)
	prov, err := run.ReadProvenance()
	if err != nil {
		t.Fatal(err)
	}
	prov.Unavailable = map[string]string{"cpu-only": "scheduler binary scx_agent_flatcg absent from this build"}
	if err := run.WriteProvenance(prov); err != nil {
		t.Fatal(err)
	}
	s, err := analysis.Analyze(dir)
	if err != nil {
		t.Fatal(err)
	}
	md := string(report.Markdown(s, nil))
	if !strings.Contains(md, "**Not fully in force:** scheduler binary scx_agent_flatcg absent") {
		t.Errorf("unavailable configuration not labelled:\n%s", md)
	}
}

// A run resumed on newer code names both commits, counts the trials each
// ran, and warns that the configurations' differences may be the code's.
func TestReportMixedCommits(t *testing.T) {
	m := analysistest.Default()
	m.Resumed = func(tr plan.Trial) bool { return !strings.HasSuffix(tr.ID, ".r00") }
	s := analysistest.Analyzed(t, 2, m)
	md := string(report.Markdown(s, nil))
	for _, want := range []string{
		"| resumed | 2026-11-27 02:00:00 UTC at `resumed` |",
		"| trials per commit | `resumed`: 12, `synthetic`: 12 |",
		"**The trials ran on 2 versions of the code**",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md[:min(len(md), 2000)])
		}
	}
	one := analysistest.Analyzed(t, 2, analysistest.Default())
	if md := string(report.Markdown(one, nil)); strings.Contains(md, "trials per commit") || strings.Contains(md, "versions of the code") {
		t.Errorf("a run on one commit reported as mixed:\n%s", md[:min(len(md), 2000)])
	}
}

// The host's interference is shown per run and the worst trials named,
// from each trial's vCPU run delay.
func TestReportVCPUWait(t *testing.T) {
	s := analysistest.Analyzed(t, 2, analysistest.Default())
	md := string(report.Markdown(s, nil))
	if !strings.Contains(md, "| vCPU wait for a host CPU, share of runnable time | median 1.5%, max 2.9% over 24 trials |") {
		t.Errorf("no vCPU wait row:\n%s", md[:min(len(md), 2000)])
	}
	i := strings.Index(md, "Highest: ")
	if i < 0 {
		t.Fatalf("worst trials not named:\n%s", md[:min(len(md), 2000)])
	}
	line, _, _ := strings.Cut(md[i:], "\n")
	if n := strings.Count(line, "%"); n != 5 || !strings.Contains(line, " 2.9%") {
		t.Errorf("worst trials %q: want the five highest, first 2.9%%", line)
	}
	// A quiet host's wait is no warning, whatever the load average (which
	// counts the guest's own vCPUs); a busy host's is.
	if strings.Contains(md, "**The host") {
		t.Errorf("quiet run flagged:\n%s", md[:min(len(md), 2000)])
	}
	m := analysistest.Default()
	m.VCPUWaitShare = 0.25
	busy := string(report.Markdown(analysistest.Analyzed(t, 2, m), nil))
	if !strings.Contains(busy, "**The host kept the guest waiting** (median vCPU wait 25.0% of runnable time, above the 10% an otherwise idle host shows)") {
		t.Errorf("busy run not flagged:\n%s", busy[:min(len(busy), 2000)])
	}
}

// Failures with the same cause are listed once with every trial id.
func TestReportGroupsFailures(t *testing.T) {
	m := analysistest.Default()
	m.Fail = map[string]bool{"joint.mem.r00": true, "joint.mem.r01": true}
	s := analysistest.Analyzed(t, 2, m)
	md := string(report.Markdown(s, nil))
	if !strings.Contains(md, "- failed `joint.mem.r00`, `joint.mem.r01`: synthetic failure\n") {
		t.Errorf("failures not grouped:\n%s", md)
	}
}

// A victim stalled past the deadline is a failed session: named in Trials,
// counted against survival, its trial usable.
func TestReportStalledVictim(t *testing.T) {
	m := analysistest.Default()
	m.Stalled = func(tr plan.Trial) bool { return tr.ID == "baseline.mem.r01" }
	s := analysistest.Analyzed(t, 2, m)
	if len(s.Failed) != 0 || len(s.Trials) != s.Planned {
		t.Fatalf("%d of %d trials usable, failed %v: a stalled victim must not fail its trial", len(s.Trials), s.Planned, s.Failed)
	}
	md := string(report.Markdown(s, nil))
	for _, want := range []string{
		"1 victim session(s) had not finished their measured phase by the deadline (the phase plus a grace) and were killed without a result, counted as failed sessions in usable trials: `baseline.mem.r01` (chat).",
		"| mem | baseline | 2 | 0.5 (range 0–1.00) |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
}

// The pathology table puts survival, faults, stalls, the neighbours'
// reclaim CPU and the allocation probe beside the victims' p99, and the
// Trials section names the sessions the OOM killer ended.
func TestReportMemoryPathologies(t *testing.T) {
	m := analysistest.Default()
	m.OOMKilled = func(tr plan.Trial) bool { return tr.ID == "baseline.mem.r01" }
	m.AllocUS = func(cfg, set string) float64 { return 2000 }
	s := analysistest.Analyzed(t, 2, m)
	md := string(report.Markdown(s, nil))
	for _, want := range []string{
		"The OOM killer ended 1 victim session(s), counted as failed sessions in usable trials (see survival under Memory pathologies): `baseline.mem.r01` (chat).",
		"## Memory pathologies: survival, faults, reclaim",
		"| neighbours | configuration | n | survived | `chat` p99 ms | victim pgmajfault | victim mem some % | victim mem full % | neighbour sys ms over high | neighbour s over high | neighbour OOM kills | `chat` alloc p95 ms | `chat` alloc p99 ms |",
		// One of two repetitions survived; the other's p99 stands alone.
		"| mem | baseline | 2 | 0.5 (range 0–1.00) | 37.2 |",
		// The synthetic neighbour is over memory.high for the whole 4 s
		// in set mem, burning 10 ms of system time per 100 ms.
		"| 10.0 | 2.00 | 1.00 | 400 | 4.00 | 0 |",
		"| solo | joint | 2 | 1.00 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		i := strings.Index(md, "## Memory pathologies")
		t.Log(md[i : i+3000])
	}
}
