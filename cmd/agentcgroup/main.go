// Command agentcgroup is the client of agentcgroupd for agent runtimes:
//
//	agentcgroup session start ID [--label k=v]...
//	agentcgroup session end ID [--force]
//	agentcgroup step run --session S --class interactive|tool_burst|background [--step T] -- CMD...
//	agentcgroup status [--json]
//	agentcgroup reload
//
// `step run` creates the step cgroup, starts CMD already inside it
// (CLONE_INTO_CGROUP, so nothing runs outside the step), waits, asks the
// daemon to remove the step and exits with CMD's exit status (128+signal if
// it was killed).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
)

const defaultSocket = "/run/agentcgroup/agentcgroupd.sock"

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  agentcgroup [--socket PATH] session start ID [--label k=v]...
  agentcgroup [--socket PATH] session end ID [--force]
  agentcgroup [--socket PATH] step run --session S --class interactive|tool_burst|background [--step T] -- CMD...
  agentcgroup [--socket PATH] status [--json]
  agentcgroup [--socket PATH] reload
The socket defaults to $AGENTCGROUP_SOCKET or `+defaultSocket+`.
`)
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type labels map[string]string

func (l labels) String() string { return fmt.Sprint(map[string]string(l)) }
func (l labels) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q: write name=value", s)
	}
	l[k] = v
	return nil
}

func run(args []string, stdout, stderr io.Writer) int {
	g := flag.NewFlagSet("agentcgroup", flag.ContinueOnError)
	g.SetOutput(stderr)
	sock := os.Getenv("AGENTCGROUP_SOCKET")
	if sock == "" {
		sock = defaultSocket
	}
	g.StringVar(&sock, "socket", sock, "agentcgroupd's unix socket")
	g.Usage = func() { usage(stderr) }
	if err := g.Parse(args); err != nil {
		return 2
	}
	a := g.Args()
	c := api.NewClient(sock)
	fail := func(err error) int {
		fmt.Fprintf(stderr, "agentcgroup: %v\n", err)
		return 1
	}
	switch {
	case len(a) >= 2 && a[0] == "session" && a[1] == "start":
		fs := flag.NewFlagSet("session start", flag.ContinueOnError)
		fs.SetOutput(stderr)
		lb := labels{}
		fs.Var(lb, "label", "session label name=value (repeatable)")
		id, rest := firstArg(a[2:])
		if err := fs.Parse(rest); err != nil || id == "" || fs.NArg() != 0 {
			fmt.Fprintln(stderr, "agentcgroup: session start needs exactly one ID, e.g. `agentcgroup session start s1 --label repo=x`")
			return 2
		}
		if _, err := c.StartSession(api.SessionRequest{ID: id, Labels: lb}); err != nil {
			return fail(err)
		}
		return 0
	case len(a) >= 2 && a[0] == "session" && a[1] == "end":
		fs := flag.NewFlagSet("session end", flag.ContinueOnError)
		fs.SetOutput(stderr)
		force := fs.Bool("force", false, "kill live steps")
		id, rest := firstArg(a[2:])
		if err := fs.Parse(rest); err != nil || id == "" || fs.NArg() != 0 {
			fmt.Fprintln(stderr, "agentcgroup: session end needs exactly one ID")
			return 2
		}
		if err := c.EndSession(id, *force); err != nil {
			return fail(err)
		}
		return 0
	case len(a) >= 2 && a[0] == "step" && a[1] == "run":
		return stepRun(c, a[2:], stderr)
	case len(a) >= 1 && a[0] == "status":
		fs := flag.NewFlagSet("status", flag.ContinueOnError)
		fs.SetOutput(stderr)
		asJSON := fs.Bool("json", false, "print JSON")
		if err := fs.Parse(a[1:]); err != nil {
			return 2
		}
		st, err := c.Status()
		if err != nil {
			return fail(err)
		}
		if *asJSON {
			e := json.NewEncoder(stdout)
			e.SetIndent("", "  ")
			e.Encode(st)
			return 0
		}
		fmt.Fprintf(stdout, "config %s  monitor_only=%v  memory_mode: %s (%s)  probe: %s  scheduler: %s\n", st.Config, st.MonitorOnly, st.MemoryMode, st.MemoryModeReason, st.Probe, st.Scheduler)
		if o := st.MemcgOps; o != nil {
			fmt.Fprintf(stdout, "memcg_agent_ops: delay calls %d (with delay %d, within burst credit %d, %d ms asked), low grants %d, min grants %d, revoked %d\n",
				o.DelayCalls, o.DelayNonzero, o.DelayCredit, o.DelayMsSum, o.LowGrants, o.MinGrants, o.Revoked)
		}
		if st.LastReload != "" {
			fmt.Fprintf(stdout, "last reload: %s\n", st.LastReload)
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SESSION\tSTEP\tCLASS\tPROFILE\tSTATE\tMEM\tHIGH\tHIGH_EVENTS\tSCORE")
		for _, s := range st.Steps {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\n", s.Session, s.Step, s.Class, s.Profile, s.State, s.MemoryCurrent, s.MemoryHigh, s.MemoryEvents["high"], s.ThrashScore)
		}
		tw.Flush()
		return 0
	case len(a) == 1 && a[0] == "reload":
		if err := c.Reload(); err != nil {
			return fail(err)
		}
		return 0
	}
	usage(stderr)
	return 2
}

// firstArg splits a leading positional argument from flags that follow it.
func firstArg(a []string) (string, []string) {
	if len(a) > 0 && !strings.HasPrefix(a[0], "-") {
		return a[0], a[1:]
	}
	return "", a
}

func stepRun(c *api.Client, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("step run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sess := fs.String("session", "", "session id (required)")
	class := fs.String("class", "", "interactive, tool_burst or background (required)")
	tid := fs.String("step", "", "step id (default: the daemon picks one)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	argv := fs.Args()
	if *sess == "" || *class == "" || len(argv) == 0 {
		fmt.Fprintln(stderr, "agentcgroup: step run needs --session, --class and a command after --, e.g. `agentcgroup step run --session s1 --class tool_burst -- make test`")
		return 2
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintf(stderr, "agentcgroup: %v\n", err)
		return 127
	}
	st, err := c.CreateStep(api.StepRequest{Session: *sess, Step: *tid, Class: *class, Argv: argv})
	if err != nil {
		fmt.Fprintf(stderr, "agentcgroup: %v\n", err)
		return 1
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "AGENTCGROUP_SESSION="+st.Session, "AGENTCGROUP_STEP="+st.Step)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	code := 0
	if err := (cgroupfs.Cgroup{Path: st.Cgroup}).Start(cmd); err != nil {
		fmt.Fprintf(stderr, "agentcgroup: %v\n", err)
		code = 126
	} else {
		go func() {
			for s := range sigs {
				_ = cmd.Process.Signal(s)
			}
		}()
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			} else {
				code = ee.ExitCode()
			}
		default:
			fmt.Fprintf(stderr, "agentcgroup: %v\n", err)
			code = 1
		}
	}
	signal.Stop(sigs)
	// The daemon may be restarting; retry briefly. If it stays away, it
	// removes the empty step when it next starts.
	var derr error
	for i := 0; i < 20; i++ {
		derr = c.DeleteStep(st.Session, st.Step)
		var ae *api.APIError
		if derr == nil || (errors.As(derr, &ae) && ae.Status == 404) {
			derr = nil
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if derr != nil {
		fmt.Fprintf(stderr, "agentcgroup: removing step %s/%s: %v\n", st.Session, st.Step, derr)
	}
	return code
}
