package report_test

import (
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/harness/analysis"
	"github.com/agentcgroup/agentcgroup/harness/analysis/analysistest"
	"github.com/agentcgroup/agentcgroup/harness/plan"
	"github.com/agentcgroup/agentcgroup/harness/report"
	"github.com/agentcgroup/agentcgroup/harness/results"
)

// sweepScenario is the synthetic scenario with a policy of two profiles
// and a [sweep].
func sweepScenario(reps int, sweep string) string {
	policy := `config = """
[profiles.background.escalation]
throttle_score = 10
freeze_score = 30
[profiles.interactive.escalation]
exempt = true
"""`
	return strings.Replace(analysistest.Scenario(reps), `config = "# test policy"`, policy, 1) + "[sweep]\n" + sweep
}

// writeSweep writes a synthetic sweep run in which a lower thrash
// threshold helps the victim and freeze_score 80 lets the OOM killer end
// the victim in the first repetition with the memory neighbour.
func writeSweep(t *testing.T, reps int, sweep string) (md string, files map[string][]byte) {
	t.Helper()
	m := analysistest.Default()
	m.Samples = 400
	def := m.LatencyUS
	m.LatencyUS = func(cfg, set string) (float64, float64) {
		switch {
		case set == plan.Solo:
		case strings.HasSuffix(cfg, "_thr10"):
			return 2100, 3
		case strings.HasSuffix(cfg, "_thr100"):
			return 2900, 9
		}
		return def(cfg, set)
	}
	m.OOMKilled = func(tr plan.Trial) bool {
		return strings.Contains(tr.Config, "_frz80") && tr.Neighbour == "mem" && tr.Rep == 0
	}
	dir, err := analysistest.WriteRunOf(t.TempDir(), sweepScenario(reps, sweep), m)
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
	files = snapshot(t, dir)
	return string(files[results.ReportFile]), files
}

func section(md, head string) string {
	i := strings.Index(md, head)
	if i < 0 {
		return ""
	}
	sec := md[i+len(head):]
	if j := strings.Index(sec, "\n## "); j >= 0 {
		sec = sec[:j]
	}
	return sec
}

func TestReportSweepSection(t *testing.T) {
	md, files := writeSweep(t, 3, "thrash_threshold = [10, 100]\nfreeze_score = [40, 80]\nprofiles = [\"background\"]\n")
	sec := section(md, "## Parameter sweep\n")
	if sec == "" {
		t.Fatalf("no Parameter sweep section:\n%s", md)
	}
	for _, want := range []string{
		"This run sweeps `freeze_score` (40, 80), `thrash_threshold` (10, 100), policy fields in the policy profiles background.",
		"- `freeze_score`: escalation.freeze_score of the policy's profiles", "Swept in mem-only, joint; not in baseline, cpu-only.",
		"- `thrash_threshold`: the thrash_score at which scx_agent_flatcg applies its CPU penalty", "Swept in joint; not in baseline, cpu-only, mem-only.",
		"**Fewer than 5 repetitions in some sweep cells** (as few as 3): their intervals are the lowest and highest repetition, not confidence intervals, and nothing here says one value beats another.",
		"### `thrash_threshold`",
		"- victim p99 and survival against thrash_threshold, neighbours mem; bars: min-max range of n < 5 reps, not a CI: [PNG](figures/sweep-thrash_threshold-mem.png)",
		"| neighbours | configuration | other parameters | thrash_threshold | n | survived | `chat` p99 ms |",
		// The configuration cell for reference, then each series.
		"| mem | joint | as written | as written | 3 | 1.00 |",
		"| mem | joint | freeze_score=40 | 10 | 3 | 1.00 | ",
		"| mem | joint | freeze_score=80 | 100 | 3 | 0.667 (range 0–1.00) | ",
		"### `freeze_score`",
		"| cpu | mem-only | – | 80 | 3 | 1.00 | ",
		"| mem | mem-only | – | 80 | 3 | 0.667 (range 0–1.00) | ",
		"| mem | joint | thrash_threshold=10 | 40 | 3 | 1.00 | ",
	} {
		if !strings.Contains(sec, want) {
			t.Errorf("sweep section lacks %q", want)
		}
	}
	// The cell values are ranges over 3 repetitions, and each row is its
	// own cell: in the model p99 rises with the threshold.
	p99 := map[string]string{}
	for _, l := range strings.Split(sec, "\n") {
		for _, v := range []string{"10", "100"} {
			if strings.HasPrefix(l, "| cpu | joint | freeze_score=40 | "+v+" |") {
				f := strings.Split(l, " | ")
				p99[v] = f[len(f)-1]
				if !strings.Contains(l, "(range ") {
					t.Errorf("sweep row without its range: %s", l)
				}
			}
		}
	}
	if p99["10"] == "" || p99["10"] == p99["100"] {
		t.Errorf("thrash_threshold 10 and 100 rows: p99 %q and %q, want two different cells", p99["10"], p99["100"])
	}
	// thrash_threshold does not act in mem-only: no series of it there.
	thr := section(md, "### `thrash_threshold`")
	if i := strings.Index(thr, "### "); i >= 0 {
		thr = thr[:i]
	}
	if strings.Contains(thr, "| mem-only |") || strings.Contains(thr, "| cpu-only |") {
		t.Errorf("thrash_threshold table has cells it does not act in:\n%s", thr)
	}

	for _, f := range []string{"sweep-thrash_threshold-cpu", "sweep-thrash_threshold-mem", "sweep-thrash_threshold-solo", "sweep-freeze_score-mem"} {
		svg := string(files["figures/"+f+".svg"])
		if _, ok := files["figures/"+f+".png"]; !ok || svg == "" {
			t.Errorf("figure %s missing", f)
			continue
		}
		for _, want := range []string{"min-max range of n &lt; 5 reps, not a CI", "sessions survived", "p99 latency (ms)"} {
			if !strings.Contains(svg, want) {
				t.Errorf("%s.svg lacks %q", f, want)
			}
		}
	}
	svg := string(files["figures/sweep-thrash_threshold-mem.svg"])
	for _, want := range []string{"chat p99, neighbours mem (bars: min-max range", "joint freeze_score=40", "joint freeze_score=80", "victim survival, neighbours mem", ">thrash_threshold<"} {
		if !strings.Contains(svg, want) {
			t.Errorf("sweep-thrash_threshold-mem.svg lacks %q", want)
		}
	}
	if !strings.Contains(string(files["figures/sweep-freeze_score-mem.svg"]), "mem-only") {
		t.Errorf("freeze_score figure has no mem-only series")
	}

	// Findings compare configuration cells only, and the side-by-side
	// figures draw only those; the tables list every cell.
	for _, f := range findings(md) {
		if strings.Contains(f, "_thr") || strings.Contains(f, "_frz") {
			t.Errorf("a sweep cell in Findings: %s", f)
		}
	}
	if !strings.Contains(md, "Only configuration cells are compared here; the sweep cells are under Parameter sweep.") {
		t.Errorf("Findings do not say sweep cells are left out")
	}
	if strings.Contains(string(files["figures/tail-chat-p99.svg"]), "_thr10") {
		t.Errorf("the tail figure draws sweep cells")
	}
	if !strings.Contains(md, "- joint_frz40_thr10: scx_agent_flatcg (all tasks); ") || !strings.Contains(md, "; sweep point freeze_score=40 thrash_threshold=10 on joint. as named") {
		t.Errorf("Configurations section does not name the sweep cell's point")
	}
	if !strings.Contains(md, "| cpu | joint_frz40_thr10 | 3 |") {
		t.Errorf("latency table lacks the sweep cells")
	}
}

// With enough repetitions the cells carry bootstrap intervals, and the
// section says the grid is not tested cell against cell.
func TestReportSweepFiveReps(t *testing.T) {
	md, files := writeSweep(t, 5, "penalty = [0.1, 0.5]\n")
	sec := section(md, "## Parameter sweep\n")
	for _, want := range []string{
		"No sweep cell is tested against another",
		"Swept in joint; not in baseline, cpu-only, mem-only.",
		"| mem | joint | – | 0.1 | 5 | 1.00 | ",
		"victim p99 and survival against penalty, neighbours mem; bars: 95% bootstrap CI",
	} {
		if !strings.Contains(sec, want) {
			t.Errorf("sweep section lacks %q:\n%s", want, sec)
		}
	}
	if strings.Contains(sec, "Fewer than 5") {
		t.Errorf("5 repetitions called too few")
	}
	for _, l := range strings.Split(sec, "\n") {
		if strings.HasPrefix(l, "| mem | joint | – | 0.5 |") && !strings.Contains(l, " [") {
			t.Errorf("row without a CI: %s", l)
		}
	}
	if !strings.Contains(string(files["figures/sweep-penalty-mem.svg"]), "95% bootstrap CI") {
		t.Errorf("sweep figure does not say its bars are CIs")
	}
}
