// Command agentwork runs the evaluation's workloads inside a guest: one
// trial from a spec (agentwork trial), or any single workload standalone.
// It re-executes itself for child processes (tool-burst children, fork-storm
// children, trace steps), so the guest needs only this one binary.
package main

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/agentcgroup/agentcgroup/workloads/runner"
)

type command struct {
	summary string
	run     func(args []string) error
	hidden  bool // internal: started by agentwork itself
}

var commands = map[string]command{
	"trial":         {summary: "run one trial from a spec: trial --spec FILE --out DIR", run: cmdTrial},
	"trace-convert": {summary: "convert a recorded task dir (tool_calls.json, resources.json) to a trace JSON", run: cmdTraceConvert},
	"traces":        {summary: "list embedded traces", run: cmdTraces},
	"inspect":       {summary: "check and summarise a trial output directory", run: cmdInspect},
	"example-spec":  {summary: "print an example trial spec to start from", run: cmdExampleSpec},
	"run":           {summary: "run one workload of a spec (used by trial)", run: cmdRun, hidden: true},
	"child":         {summary: "tool_burst child", run: childCmd("child"), hidden: true},
	"trace-step":    {summary: "one replayed trace step", run: childCmd("trace-step"), hidden: true},
}

func childCmd(name string) func([]string) error {
	return func(args []string) error {
		_, err := runner.ChildMain(append([]string{name}, args...))
		return err
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: agentwork COMMAND [flags]\n\ncommands:\n")
	var names []string
	for n, c := range commands {
		if !c.hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-14s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(os.Stderr, "\nrun 'agentwork COMMAND -h' for its flags\n")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "agentwork: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err := c.run(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "agentwork %s: %s\n", os.Args[1], strings.TrimSpace(err.Error()))
		os.Exit(1)
	}
}
