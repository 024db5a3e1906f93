package main

import (
	"context"
	"flag"
	"fmt"
)

func init() {
	commands["figures"] = runFigures
}

// runFigures rebuilds summary.csv, report.md and figures/ of a run from its
// raw trial data alone.
func runFigures(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("figures", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: agentbench figures results/<dir>")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return flag.ErrHelp
	}
	return writeReport(fs.Arg(0))
}
