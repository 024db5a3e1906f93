package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/bpf/flatcg"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
	"github.com/agentcgroup/agentcgroup/workloads/load"
	"github.com/agentcgroup/agentcgroup/workloads/runner"
)

func cmdTrial(args []string) error {
	fs := flag.NewFlagSet("trial", flag.ExitOnError)
	specPath := fs.String("spec", "/run/trial.json", "trial spec (JSON, harness/trial.Spec)")
	out := fs.String("out", "/out/trial", "output directory (written atomically)")
	mount := fs.String("mount", cgroupfs.DefaultMount, "cgroup2 mount")
	fs.Parse(args)
	spec, err := trial.ReadSpec(*specPath)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	return runner.RunTrial(ctx, spec, runner.Options{SpecPath: *specPath, Out: *out, Mount: *mount})
}

// cmdRun runs one named workload of a spec; agentwork trial starts it
// inside the workload's cgroup.
func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	specPath := fs.String("spec", "", "trial spec")
	vname := fs.String("victim", "", "victim name")
	nname := fs.String("neighbour", "", "neighbour name")
	result := fs.String("result", "", "write the trial.WorkloadResult JSON here")
	hlog := fs.String("hlog", "", "victim: interval log path")
	mount := fs.String("mount", cgroupfs.DefaultMount, "cgroup2 mount")
	sock := fs.String("daemon-socket", "", "trace victims: create steps through this agentcgroupd socket")
	fs.Parse(args)
	spec, err := trial.ReadSpec(*specPath)
	if err != nil {
		return err
	}
	if err := runner.ResetOOMScore(); err != nil {
		return err
	}
	if spec.Stack.Scheduler == stack.SchedPartial {
		// A partial-mode scheduler sees only SCHED_EXT tasks: switch
		// this launcher before it does any work, so the workload and
		// everything it forks or executes run on it.
		if err := flatcg.SetSchedExtProcess(os.Getpid()); err != nil {
			return fmt.Errorf("configuration %s: %w", spec.Stack.Name, err)
		}
	}
	ctx, cancel := signalContext()
	defer cancel()
	var res trial.WorkloadResult
	switch {
	case *vname != "":
		var v *trial.Victim
		for i := range spec.Victims {
			if spec.Victims[i].Name == *vname {
				v = &spec.Victims[i]
			}
		}
		if v == nil {
			return fmt.Errorf("no victim %q in %s", *vname, *specPath)
		}
		res = runner.RunVictim(ctx, runner.VictimRun{
			Victim: *v, Seed: load.SubSeed(spec.Seed, "victim/"+v.Name), Dur: spec.Duration.D(),
			Hlog: *hlog, Mount: *mount, DaemonSocket: *sock, Ready: readyHandshake,
			Stack: spec.Stack, Policy: spec.Policy,
		})
	case *nname != "":
		var n *trial.Neighbour
		for i := range spec.Neighbours {
			if spec.Neighbours[i].Name == *nname {
				n = &spec.Neighbours[i]
			}
		}
		if n == nil {
			return fmt.Errorf("no neighbour %q in %s", *nname, *specPath)
		}
		res = runner.RunNeighbour(ctx, *n, load.SubSeed(spec.Seed, "neighbour/"+n.Name))
	default:
		return fmt.Errorf("name a workload with --victim or --neighbour")
	}
	if err := fsutil.WriteJSON(*result, res); err != nil {
		return err
	}
	if *vname != "" {
		// Stay in the cgroup until the runner has taken its snapshot.
		fmt.Println("done")
		io.Copy(io.Discard, stdin)
	}
	if res.Error != "" {
		return fmt.Errorf("%s", res.Error)
	}
	return nil
}

var stdin = bufio.NewReader(os.Stdin)

// readyHandshake tells the trial runner we are prepared and reads the
// measured phase's start (Unix ns) from stdin.
func readyHandshake() (time.Time, error) {
	fmt.Println("ready")
	line, err := stdin.ReadString('\n')
	if err != nil {
		return time.Time{}, fmt.Errorf("waiting for the start time: %v", err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("start time %q: %v", line, err)
	}
	return time.Unix(0, ns), nil
}

func cmdExampleSpec(args []string) error {
	b, err := trial.ExampleSpec().Encode()
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}
