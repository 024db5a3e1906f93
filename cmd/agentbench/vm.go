package main

import (
	"context"
	"flag"
	"fmt"
	iofs "io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
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
	add := map[string]string{}
	fs.Func("add", "copy HOST:GUEST into the guest before the command runs (a file, or a directory with everything under it; GUEST absolute; repeatable)", func(s string) error {
		return addHostPath(add, s)
	})
	var pkgs []string
	fs.Func("package", "add a Debian package's programs, with their libraries, to the guest (from the userland suite of vmimages/kernels.toml; repeatable)", func(s string) error {
		pkgs = append(pkgs, s)
		return nil
	})
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
		HostFiles: add, Packages: pkgs,
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

// addHostPath adds "HOST:GUEST" to files (guest path -> host file): a
// regular file as itself, a directory as every regular file under it at
// the same relative path (modes kept). Anything else, such as a symlink
// or a device, is refused rather than silently left out.
func addHostPath(files map[string]string, spec string) error {
	host, guest, ok := strings.Cut(spec, ":")
	if !ok || host == "" || !path.IsAbs(guest) || path.Clean(guest) == "/" {
		return fmt.Errorf("%q: want HOST:GUEST with an absolute guest path below /, e.g. ./tools:/opt/tools", spec)
	}
	guest = path.Clean(guest)
	st, err := os.Stat(host)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file or directory", host)
		}
		files[guest] = host
		return nil
	}
	return filepath.WalkDir(host, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(host, p)
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("%s: not a regular file (symlinks and special files are not copied)", p)
		}
		files[path.Join(guest, filepath.ToSlash(rel))] = p
		return nil
	})
}
