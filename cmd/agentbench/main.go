// Command agentbench is the harness front door: it boots guest kernels,
// runs evaluation scenarios and turns their raw results into reports.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// commands maps a subcommand name to its entry point. Files in this package
// register their subcommands from init so each stays self-contained.
var commands = map[string]func(ctx context.Context, args []string) error{}

// errUsage marks an error whose message already explains correct usage.
var errUsage = errors.New("usage")

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	run, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "agentbench: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[2:])
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		os.Exit(int(ee))
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "agentbench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// exitError passes a guest command's exit status through unchanged.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func usage() {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(os.Stderr, "usage: agentbench <command> [flags] [args]\n\ncommands:")
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %s\n", n)
	}
}
