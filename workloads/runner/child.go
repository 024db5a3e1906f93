package runner

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/agentcgroup/agentcgroup/workloads/trace"
	"github.com/agentcgroup/agentcgroup/workloads/victim"
)

// ChildMain runs the bodies of the processes agentwork starts from itself
// ("child" for tool-burst children, "trace-step" for replayed tool calls).
// It reports whether args named one of them. A test binary calls it from
// TestMain so it can stand in for agentwork.
func ChildMain(args []string) (bool, error) {
	if len(args) == 0 {
		return false, nil
	}
	switch args[0] {
	case "child":
		fs := flag.NewFlagSet("child", flag.ContinueOnError)
		var c victim.Child
		fs.Int64Var(&c.CPULoops, "cpu-loops", 0, "")
		fs.Int64Var(&c.AllocBytes, "alloc", 0, "")
		fs.Uint64Var(&c.Seed, "seed", 0, "")
		if err := fs.Parse(args[1:]); err != nil {
			return true, err
		}
		return true, victim.RunChild(c)
	case "trace-step":
		fs := flag.NewFlagSet("trace-step", flag.ContinueOnError)
		work := fs.String("work", "", "step work JSON")
		seed := fs.Uint64("seed", 0, "")
		if err := fs.Parse(args[1:]); err != nil {
			return true, err
		}
		var w trace.StepWork
		if err := json.Unmarshal([]byte(*work), &w); err != nil {
			return true, fmt.Errorf("--work: %v", err)
		}
		ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer cancel()
		return true, trace.RunStep(ctx, w, *seed)
	}
	return false, nil
}
