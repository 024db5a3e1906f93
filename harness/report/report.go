// Package report writes a run's derived files from an analysis.Summary:
// summary.csv, report.md and figures/ (PNG and SVG). Output depends only on
// the summary, which depends only on the raw data, so `agentbench figures`
// regenerates identical files.
package report

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/agentcgroup/agentcgroup/harness/analysis"
	"github.com/agentcgroup/agentcgroup/harness/results"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// Write produces summary.csv, report.md and figures/ in the run directory.
func Write(s *analysis.Summary) error {
	figDir := filepath.Join(s.Dir, results.FiguresDir)
	// Stale figures from an older layout must not survive a regeneration.
	if err := os.RemoveAll(figDir); err != nil {
		return err
	}
	if err := os.MkdirAll(figDir, 0o755); err != nil {
		return err
	}
	figs, err := Figures(s, figDir)
	if err != nil {
		return fmt.Errorf("figures: %w", err)
	}
	if err := fsutil.WriteFile(filepath.Join(s.Dir, results.SummaryFile), CSV(s)); err != nil {
		return err
	}
	return fsutil.WriteFile(filepath.Join(s.Dir, results.ReportFile), Markdown(s, figs))
}

// CSV is the long-format summary: one row per (configuration, neighbour
// set, metric) with the per-repetition values behind the estimate. The
// interval column says what lo and hi are (analysis.IntervalKind): a 95%
// bootstrap CI from analysis.MinReps repetitions, the min-max range below.
func CSV(s *analysis.Summary) []byte {
	var b bytes.Buffer
	b.WriteString("scenario,config,neighbour,metric,n,mean,lo,hi,interval,values\n")
	for _, r := range s.Rows {
		vals := make([]string, len(r.Values))
		for i, v := range r.Values {
			vals[i] = num(v)
		}
		fmt.Fprintf(&b, "%s,%s,%s,%s,%d,%s,%s,%s,%s,%s\n", s.Scenario, r.Config, r.Neighbour, r.Metric,
			r.Est.N, num(r.Est.Mean), num(r.Est.Lo), num(r.Est.Hi), r.Est.Interval, strings.Join(vals, " "))
	}
	return b.Bytes()
}

func num(v float64) string {
	if math.IsNaN(v) {
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

// label is how a neighbour set appears in tables and figures.
func label(set string) string {
	if set == analysis.Solo {
		return "solo"
	}
	return set
}
