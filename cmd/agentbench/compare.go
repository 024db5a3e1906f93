package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/agentcgroup/agentcgroup/harness/analysis"
	"github.com/agentcgroup/agentcgroup/harness/compare"
)

func init() {
	commands["compare"] = runCompare
}

// exitRegression is compare's exit status when a p99 regressed.
const exitRegression = 3

func runCompare(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	threshold := fs.Float64("threshold", compare.DefaultOptions.ThresholdPct, "a p99 growing by more than this many percent, significantly, fails the gate")
	alpha := fs.Float64("alpha", compare.DefaultOptions.Alpha, "Mann-Whitney significance level")
	all := fs.Bool("all", false, "print every metric, not only latency, slowdown and memory.events")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: agentbench compare [flags] OLD_RUN NEW_RUN\n\nexits %d when a p99 regressed\n", exitRegression)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return flag.ErrHelp
	}
	if *threshold < 0 || *alpha <= 0 || *alpha >= 1 {
		return fmt.Errorf("--threshold must be >= 0 and --alpha in (0, 1); got %g and %g", *threshold, *alpha)
	}
	old, err := analysis.Analyze(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("old run: %w", err)
	}
	new, err := analysis.Analyze(fs.Arg(1))
	if err != nil {
		return fmt.Errorf("new run: %w", err)
	}
	if old.Scenario != new.Scenario {
		fmt.Fprintf(os.Stderr, "agentbench compare: warning: comparing scenario %q with %q\n", old.Scenario, new.Scenario)
	}
	res := compare.Compare(old, new, compare.Options{ThresholdPct: *threshold, Alpha: *alpha, All: *all})
	if err := res.Write(os.Stdout, fs.Arg(0), fs.Arg(1)); err != nil {
		return err
	}
	if len(res.Regressions) > 0 {
		return exitError(exitRegression)
	}
	return nil
}
