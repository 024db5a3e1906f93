package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/lab"
)

func init() {
	commands["vm"] = runVM
}

func runVM(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "exec" {
		return fmt.Errorf("usage: agentbench vm exec [flags] -- CMD [ARGS...]")
	}
	fs := flag.NewFlagSet("vm exec", flag.ContinueOnError)
	kernelName := fs.String("kernel", "stock", "guest kernel, a name in vmimages/kernels.toml")
	mem := fs.Int("mem", 1024, "guest memory in MiB")
	cpus := fs.Int("cpus", 2, "guest vCPUs")
	out := fs.String("out", "", "copy the guest's /out into this directory")
	timeout := fs.Duration("timeout", 5*time.Minute, "kill the guest after this long")
	verbose := fs.Bool("v", false, "print boot and run timings and harness progress")
	console := fs.String("console", "", "save the guest's kernel console log to this file")
	kargs := fs.String("append", "", "extra kernel command line")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: agentbench vm exec [flags] -- CMD [ARGS...]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return flag.ErrHelp
	}
	job := lab.Job{
		Kernel: *kernelName, MemMB: *mem, CPUs: *cpus,
		Argv: fs.Args(), OutDir: *out, Timeout: *timeout,
		Stdout: os.Stdout, Log: os.Stderr, ConsoleLog: *console, KernelArgs: *kargs,
	}
	if !*verbose {
		job.Log = nil
	}
	res, err := lab.Exec(ctx, job)
	if res != nil && *verbose {
		fmt.Fprintf(os.Stderr, "agentbench: kernel %s, accel %s, boot-to-command %v, run %v, total %v\n",
			res.Kernel, res.Accel, res.BootToCommand.Round(time.Millisecond), res.Run.Round(time.Millisecond), res.Total.Round(time.Millisecond))
	}
	if res != nil {
		for _, w := range res.Warnings {
			fmt.Fprintf(os.Stderr, "agentbench: guest: %s\n", w)
		}
	}
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		return exitError(res.ExitCode)
	}
	return nil
}
