package runner

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

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
		cg := fs.String("cgroup", "", "the step's own cgroup directory, where its memory is measured")
		if err := fs.Parse(args[1:]); err != nil {
			return true, err
		}
		var w trace.StepWork
		if err := json.Unmarshal([]byte(*work), &w); err != nil {
			return true, fmt.Errorf("--work: %v", err)
		}
		// The step's memory is its profile's: khugepaged would
		// otherwise collapse the Go runtime's sparsely used heap into
		// huge pages now and then and add up to 2 MiB at a time.
		if err := unix.Prctl(unix.PR_SET_THP_DISABLE, 1, 0, 0, 0); err != nil {
			return true, fmt.Errorf("disabling transparent huge pages: %v", err)
		}
		// what the process holds now counts towards the step's memory
		own, err := trace.OwnMemory(*cg)
		if err != nil {
			return true, fmt.Errorf("own memory: %v", err)
		}
		ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer cancel()
		rep, err := trace.RunStep(ctx, w, *seed, own)
		// the driver reads the report from stdout
		b, _ := json.Marshal(rep)
		fmt.Println(string(b))
		return true, err
	}
	return false, nil
}
