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
		"the neighbours slow the victim", "interval above 1",
		"| cpu | baseline | 3 |", "memory.events per configuration", "victim mem some %",
		"figures/timeline.png",
		"| host load (1 min) at trial starts | median 3.5, max 4.5 over 36 boots |", "**The host was oversubscribed** (median load 3.5 on 2 CPUs)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	csv := string(a[results.SummaryFile])
	if !strings.HasPrefix(csv, "scenario,config,neighbour,metric,n,mean,ci95_lo,ci95_hi,values\n") ||
		!strings.Contains(csv, "synth,baseline,cpu,chat.p99_ms,3,") {
		t.Errorf("summary.csv malformed:\n%.400s", csv)
	}
}

// When joint does not beat baseline the report says so.
func TestReportSaysWhenJointDoesNotWin(t *testing.T) {
	m := analysistest.Default()
	m.LatencyUS = func(cfg, set string) (float64, float64) {
		if set == "none" {
			return 2000, 3
		}
		return 3000, 10 // every configuration equally hurt
	}
	dir, err := analysistest.WriteRun(t.TempDir(), 3, m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := analysis.Analyze(dir)
	if err != nil {
		t.Fatal(err)
	}
	md := string(report.Markdown(s, nil))
	if !strings.Contains(md, "joint: p99") || !strings.Contains(md, "**does not beat** baseline") {
		t.Errorf("report does not say joint fails to beat baseline:\n%s", md)
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
	if !strings.Contains(md, "**cpu-only: not fully in force.** scheduler binary scx_agent_flatcg absent") {
		t.Errorf("unavailable configuration not labelled:\n%s", md)
	}
}

// Failures with the same cause are listed once with every trial id.
func TestReportGroupsFailures(t *testing.T) {
	m := analysistest.Default()
	m.Fail = map[string]bool{"joint.mem.r00": true, "joint.mem.r01": true}
	dir, err := analysistest.WriteRun(t.TempDir(), 2, m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := analysis.Analyze(dir)
	if err != nil {
		t.Fatal(err)
	}
	md := string(report.Markdown(s, nil))
	if !strings.Contains(md, "- failed `joint.mem.r00`, `joint.mem.r01`: synthetic failure\n") {
		t.Errorf("failures not grouped:\n%s", md)
	}
}
