package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/agentcgroup/agentcgroup/harness/kernel"
	"github.com/agentcgroup/agentcgroup/harness/lab"
)

func init() {
	commands["kernel"] = runKernel
}

func runKernel(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: agentbench kernel fetch [NAME...] | kernel bump NAME")
	}
	root, err := lab.RepoRoot()
	if err != nil {
		return err
	}
	pinsPath := filepath.Join(root, "vmimages", "kernels.toml")
	pins, err := kernel.LoadPins(pinsPath)
	if err != nil {
		return err
	}
	switch args[0] {
	case "fetch":
		fs := flag.NewFlagSet("kernel fetch", flag.ContinueOnError)
		all := fs.Bool("all", false, "also kernels built from source (slow when not cached)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		names := fs.Args()
		if len(names) == 0 {
			for n, p := range pins.Kernels {
				if !p.Built() || *all {
					names = append(names, n)
				}
			}
		}
		for _, n := range names {
			env, err := lab.Setup(ctx, n, os.Stderr)
			if err != nil {
				return err
			}
			fmt.Printf("%s\t%s\t%s\n", n, env.Kernel.Release, env.Kernel.Dir)
		}
		return nil
	case "bump":
		if len(args) != 2 {
			return fmt.Errorf("usage: agentbench kernel bump NAME")
		}
		return bumpKernel(ctx, pins, pinsPath, args[1])
	}
	return fmt.Errorf("unknown kernel subcommand %q (want fetch or bump)", args[0])
}

func bumpKernel(ctx context.Context, pins *kernel.Pins, path, name string) error {
	cache, err := kernel.CacheDir()
	if err != nil {
		return err
	}
	changes, err := kernel.Bump(ctx, pins, name, cache)
	if err != nil {
		return err
	}
	if len(changes) == 0 {
		fmt.Printf("%s is already at the newest version in its suite\n", name)
		return nil
	}
	if err := kernel.RewritePins(path, changes); err != nil {
		return err
	}
	for _, c := range changes {
		fmt.Printf("%s: %s %s -> %s (sha256 %s)\n", name, c.Old.Name, c.Old.Version, c.New.Version, c.New.SHA256)
	}
	fmt.Println("review and commit vmimages/kernels.toml")
	return nil
}
