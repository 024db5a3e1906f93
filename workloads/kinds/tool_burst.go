package kinds

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/victim"
)

// tool_burst: a step forks children (agentwork child processes), at most
// parallel at once; latency is the step's completion from its intended
// start.
func init() {
	Register(&Kind{
		Name:        trial.VictimToolBurst,
		Summary:     "victim: compile/test-like bursts of child processes",
		Victim:      true,
		Keys:        []string{"children", "parallel", "cpu_loops", "alloc", "period"},
		VictimClass: trial.ClassToolBurst,
		Typed: &Typed{
			PutVictim: func(v *trial.Victim, p any) { v.ToolBurst = p.(*trial.ToolBurstParams) },
			GetVictim: func(v trial.Victim) any { return v.ToolBurst },
		},
		Parse:     parseToolBurst,
		RunVictim: runToolBurst,
		Flags:     toolBurstFlags,
	})
}

func parseToolBurst(in Input, role trial.Role, env Env) any {
	tb := &trial.ToolBurstParams{}
	if in.Required("children") {
		if n, ok := in.Int("children"); ok {
			tb.Children = int(n)
			if tb.Children < 1 || tb.Children > 1024 {
				in.Problem("children", "%d, want 1..1024", tb.Children)
			}
		}
	}
	tb.Parallel = env.GuestCPUs
	if n, ok := in.Int("parallel"); ok {
		tb.Parallel = int(n)
		if tb.Parallel < 1 {
			in.Problem("parallel", "%d, want >= 1", tb.Parallel)
		}
	}
	if n, ok := in.Int("cpu_loops"); ok {
		if n < 0 {
			in.Problem("cpu_loops", "must be >= 0")
		} else {
			tb.CPULoops = n
		}
	}
	if n, ok := in.Size("alloc"); ok {
		tb.AllocBytes = trial.Bytes(n)
	}
	if d, ok := in.Dur("period"); ok {
		tb.Period = trial.Duration(d)
	}
	return tb
}

func runToolBurst(ctx context.Context, r VictimRun) error {
	exe, err := self()
	if err != nil {
		return err
	}
	sched := victim.Schedule{Start: r.Start, Duration: r.Dur}
	return victim.RunToolBurst(ctx, *r.Params.(*trial.ToolBurstParams), r.Seed, sched, victim.RealClock{}, r.Rec, execChild(exe))
}

// self is the agentwork binary, which kinds re-execute for their child
// processes (tool_burst children, trace steps).
func self() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot find own executable to spawn children: %w", err)
	}
	return exe, nil
}

// execChild runs a tool-burst child as a new process (fork+exec of
// agentwork), which is what makes a tool burst kernel-heavy.
func execChild(self string) victim.Spawner {
	return func(ctx context.Context, c victim.Child) error {
		cmd := exec.CommandContext(ctx, self, "child",
			"--cpu-loops", strconv.FormatInt(c.CPULoops, 10),
			"--alloc", strconv.FormatInt(c.AllocBytes, 10),
			"--seed", strconv.FormatUint(c.Seed, 10))
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("tool_burst child: %w", err)
		}
		return nil
	}
}

func toolBurstFlags(fs *flag.FlagSet, role trial.Role) func([]string) (any, error) {
	p := &trial.ToolBurstParams{AllocBytes: 4 << 20}
	fs.IntVar(&p.Children, "children", 4, "child processes per step")
	fs.IntVar(&p.Parallel, "parallel", 2, "children alive at once")
	fs.Int64Var(&p.CPULoops, "cpu-loops", 2_000_000, "mean CPU loop iterations per child")
	sizeFlag(fs, &p.AllocBytes, "alloc", "mean bytes each child allocates and touches")
	fs.Var(&p.Period, "period", "step interval (0: back to back)")
	return func([]string) (any, error) { return p, nil }
}
