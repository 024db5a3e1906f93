package kinds

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// command runs any command line in the workload's step cgroup. As a
// victim it runs once, from the start of the measured phase until it
// exits or the phase ends, and its standard output is parsed for
// latencies; as a neighbour it is run again each time it exits, until
// the victims finish.
func init() {
	Register(&Kind{
		Name:        "command",
		Summary:     "victim or neighbour: any command line; a victim's latencies parsed from its output",
		Victim:      true,
		Neighbour:   true,
		Keys:        []string{"command", "parser", "unit"},
		VictimClass: trial.ClassToolBurst,
		New:         func() any { return &CommandParams{} },
		Parse:       parseCommand,
		Check:       checkCommand,
		RunVictim:   runCommandVictim,
		RunNeighbour: func(ctx context.Context, r NeighbourRun) (Stats, error) {
			return runCommandNeighbour(ctx, *r.Params.(*CommandParams), r.Log)
		},
		Flags: commandFlags,
	})
}

// CommandParams is a command kind's spec parameters.
type CommandParams struct {
	// Argv is the program and its arguments; the scenario's string form
	// becomes ["/bin/sh", "-c", STRING].
	Argv []string `json:"argv"`
	// Parser reads a victim's latencies from its standard output:
	// ParserCyclictest or ParserLines. Neighbours take none.
	Parser string `json:"parser,omitempty"`
	// Unit is the unit of a bare number for ParserLines ("" : a line
	// needs its own unit).
	Unit string `json:"unit,omitempty"`
}

// Latency parsers.
const (
	// ParserCyclictest reads cyclictest's histogram (-h N, with -q for
	// nothing else: one row per microsecond bucket, a count per thread,
	// overflows counted at the thread's max latency) and its verbose
	// per-sample lines (-v: "thread: cycle: latency").
	ParserCyclictest = "cyclictest"
	// ParserLines reads one latency per line: a number with a unit (ns,
	// us, µs, ms, s), or a bare number in Unit. Other lines are skipped.
	ParserLines = "lines"
)

var latencyUnits = map[string]time.Duration{"ns": time.Nanosecond, "us": time.Microsecond, "µs": time.Microsecond, "ms": time.Millisecond, "s": time.Second}

func parseCommand(in Input, role trial.Role, env Env) any {
	p := &CommandParams{}
	if in.Required("command") {
		v, _ := in.Value("command")
		switch c := v.(type) {
		case string:
			if strings.TrimSpace(c) == "" {
				in.Problem("command", "empty: write a command line, e.g. \"stress-ng --cpu 2\"")
			}
			p.Argv = []string{"/bin/sh", "-c", c}
		case []any:
			if a, ok := in.Strs("command"); ok {
				if len(a) == 0 || a[0] == "" {
					in.Problem("command", "empty: the first element is the program")
				}
				p.Argv = a
			}
		default:
			in.Problem("command", "want a command line (a string, run by /bin/sh -c) or an array of strings (program and arguments)")
		}
	}
	parser, hasParser := in.Str("parser")
	unit, hasUnit := in.Str("unit")
	switch role {
	case trial.RoleNeighbour:
		if hasParser {
			in.Problem("parser", "a neighbour is not measured; only victims take a parser")
		}
		if hasUnit {
			in.Problem("unit", "a neighbour is not measured; only victims take a unit")
		}
	case trial.RoleVictim:
		if !hasParser {
			in.Required("parser")
		} else if m := checkParser(parser, unit); m != "" {
			in.Problem("parser", "%s", m)
		}
		p.Parser = parser
		if hasUnit {
			p.Unit = unit
			switch {
			case latencyUnits[unit] == 0:
				in.Problem("unit", "%q, want ns, us, ms or s", unit)
			case hasParser && parser != ParserLines:
				in.Problem("unit", "only the %q parser takes a unit", ParserLines)
			}
		}
	}
	return p
}

func checkParser(parser, unit string) string {
	switch parser {
	case ParserCyclictest, ParserLines:
		return ""
	}
	return fmt.Sprintf("%q, want %q (run it with -h N or -v) or %q (one latency per line, e.g. \"12.5ms\")", parser, ParserCyclictest, ParserLines)
}

func checkCommand(params any, role trial.Role, s *trial.Spec) []string {
	p := params.(*CommandParams)
	var out []string
	if len(p.Argv) == 0 || p.Argv[0] == "" {
		out = append(out, "argv: empty; the first element is the program")
	}
	switch {
	case role == trial.RoleNeighbour && (p.Parser != "" || p.Unit != ""):
		out = append(out, "parser: a neighbour is not measured; leave parser and unit empty")
	case role == trial.RoleVictim:
		if m := checkParser(p.Parser, p.Unit); m != "" {
			out = append(out, "parser: "+m)
		}
		if p.Unit != "" && (latencyUnits[p.Unit] == 0 || p.Parser != ParserLines) {
			out = append(out, fmt.Sprintf("unit: %q, want ns, us, ms or s, with parser %q", p.Unit, ParserLines))
		}
	}
	return out
}

// stopGrace is how long a command has between SIGTERM and SIGKILL.
const stopGrace = 2 * time.Second

// commandCmd starts argv in a process group of its own, so stopping it
// reaches whatever it started (a shell's children, stress-ng's workers);
// it inherits the caller's cgroup, the workload's step.
func commandCmd(argv []string, stdout, stderr io.Writer) *exec.Cmd {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// waitOrStop waits for cmd, and when ctx ends first stops its group:
// SIGTERM (cyclictest prints its histogram on it), then SIGKILL after
// stopGrace. stopped says whether it was stopped.
func waitOrStop(ctx context.Context, cmd *exec.Cmd) (stopped bool, err error) {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return false, err
	case <-ctx.Done():
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case err = <-done:
	case <-time.After(stopGrace):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = <-done
	}
	return true, err
}

func runCommandVictim(ctx context.Context, r VictimRun) error {
	p := r.Params.(*CommandParams)
	parse, err := newLatencyParser(p.Parser, p.Unit)
	if err != nil {
		return err
	}
	log := r.Log
	if log == nil {
		log = io.Discard
	}
	if d := time.Until(r.Start); d > 0 {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
	}
	pr, pw := io.Pipe()
	cmd := commandCmd(p.Argv, pw, log)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("command %q: %w", p.Argv[0], err)
	}
	read := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			now := time.Now()
			samples, used := parse.line(sc.Text())
			for _, s := range samples {
				record(r, s, now)
			}
			if !used {
				fmt.Fprintln(log, sc.Text())
			}
		}
		io.Copy(io.Discard, pr)
		read <- sc.Err()
	}()
	phase, cancel := context.WithDeadline(ctx, r.Start.Add(r.Dur))
	defer cancel()
	stopped, werr := waitOrStop(phase, cmd)
	pw.Close()
	rerr := <-read
	now := time.Now()
	for _, s := range parse.end() {
		record(r, s, now)
	}
	switch {
	case werr != nil && !stopped:
		return fmt.Errorf("command %q: %w", p.Argv[0], werr)
	case rerr != nil:
		return fmt.Errorf("command %q output: %w", p.Argv[0], rerr)
	case r.Rec.Count() == 0 && ctx.Err() == nil:
		return fmt.Errorf("command %q: the %s parser found no latencies in its output%s", p.Argv[0], p.Parser, parse.hint())
	}
	return nil
}

// record adds n latencies of d, as operations completed at now.
func record(r VictimRun, s sample, now time.Time) {
	for range s.n {
		r.Rec.Record(now.Add(-s.d), now)
	}
}

func runCommandNeighbour(ctx context.Context, p CommandParams, log io.Writer) (Stats, error) {
	var st Stats
	if log == nil {
		log = io.Discard
	}
	for ctx.Err() == nil {
		began := time.Now()
		cmd := commandCmd(p.Argv, log, log)
		if err := cmd.Start(); err != nil {
			return st, fmt.Errorf("command %q: %w", p.Argv[0], err)
		}
		stopped, err := waitOrStop(ctx, cmd)
		switch {
		case stopped:
			return st, nil
		case err != nil:
			st.Failed++
			fmt.Fprintf(log, "command %q: %v\n", p.Argv[0], err)
		default:
			st.Ops++
		}
		// A command that ends at once is not restarted in a busy loop.
		if time.Since(began) < 100*time.Millisecond {
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return st, nil
}

func commandFlags(fs *flag.FlagSet, role trial.Role) func(args []string) (any, error) {
	p := &CommandParams{}
	if role == trial.RoleVictim {
		fs.StringVar(&p.Parser, "parser", ParserLines, "latency parser for the command's output: cyclictest (-h N or -v) or lines (one latency per line)")
		fs.StringVar(&p.Unit, "unit", "", "lines parser: unit of a bare number (ns, us, ms, s)")
	}
	return func(args []string) (any, error) {
		if len(args) == 0 {
			return nil, errors.New("name the command after the flags: agentwork command [flags] -- PROGRAM ARGS...")
		}
		p.Argv = args
		if m := checkCommand(p, role, nil); len(m) > 0 {
			return nil, errors.New(strings.Join(m, "; "))
		}
		return p, nil
	}
}

// sample is n latencies of d.
type sample struct {
	d time.Duration
	n int64
}

// latencyParser reads a command's output a line at a time; used says
// whether the line was its data (other lines go to the log). end returns
// what only the whole output determines.
type latencyParser interface {
	line(s string) (samples []sample, used bool)
	end() []sample
	hint() string
}

func newLatencyParser(name, unit string) (latencyParser, error) {
	switch name {
	case ParserCyclictest:
		return &cyclictestParser{}, nil
	case ParserLines:
		return &linesParser{unit: latencyUnits[unit]}, nil
	}
	return nil, errors.New(checkParser(name, unit))
}

// linesParser: one latency per line.
type linesParser struct{ unit time.Duration }

var latencyLineRe = regexp.MustCompile(`^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ns|us|µs|ms|s)?\s*$`)

func (p *linesParser) line(s string) ([]sample, bool) {
	m := latencyLineRe.FindStringSubmatch(s)
	if m == nil {
		return nil, false
	}
	unit := p.unit
	if m[2] != "" {
		unit = latencyUnits[m[2]]
	}
	if unit == 0 {
		return nil, false
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return nil, false
	}
	return []sample{{d: time.Duration(f * float64(unit)), n: 1}}, true
}

func (p *linesParser) end() []sample { return nil }
func (p *linesParser) hint() string {
	if p.unit == 0 {
		return ` (want one latency per line with its unit, e.g. "12.5ms", or set unit for bare numbers)`
	}
	return " (want one number per line)"
}

// cyclictestParser reads cyclictest -v sample lines as they come and its
// -h histogram at the end. Histogram rows have a count column per thread
// (and a total column with --histofall); the "# Max Latencies" line gives
// the thread count and each thread's maximum, where its overflows (samples
// beyond the histogram) are counted.
type cyclictestParser struct {
	rows      [][]int64 // bucket (us), then counts
	max       []int64
	overflows []int64
}

var (
	verboseRe = regexp.MustCompile(`^\s*[0-9]+:\s*[0-9]+:\s*([0-9]+)\s*$`)
	histRowRe = regexp.MustCompile(`^[0-9]+(\s+[0-9]+)+\s*$`)
)

func (p *cyclictestParser) line(s string) ([]sample, bool) {
	if m := verboseRe.FindStringSubmatch(s); m != nil {
		us, _ := strconv.ParseInt(m[1], 10, 64)
		return []sample{{d: time.Duration(us) * time.Microsecond, n: 1}}, true
	}
	if histRowRe.MatchString(s) {
		var row []int64
		for _, f := range strings.Fields(s) {
			n, _ := strconv.ParseInt(f, 10, 64)
			row = append(row, n)
		}
		p.rows = append(p.rows, row)
		return nil, true
	}
	if rest, ok := strings.CutPrefix(s, "# Max Latencies:"); ok {
		p.max = fields(rest)
		return nil, true
	}
	if rest, ok := strings.CutPrefix(s, "# Histogram Overflows:"); ok {
		p.overflows = fields(rest)
		return nil, true
	}
	return nil, strings.HasPrefix(s, "#")
}

func fields(s string) []int64 {
	var out []int64
	for _, f := range strings.Fields(s) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return out
		}
		out = append(out, n)
	}
	return out
}

func (p *cyclictestParser) end() []sample {
	var out []sample
	for _, row := range p.rows {
		counts := row[1:]
		if len(p.max) > 0 && len(counts) > len(p.max) {
			counts = counts[:len(p.max)] // drop --histofall's total
		}
		for _, n := range counts {
			if n > 0 {
				out = append(out, sample{d: time.Duration(row[0]) * time.Microsecond, n: n})
			}
		}
	}
	for i, n := range p.overflows {
		if n > 0 && i < len(p.max) {
			out = append(out, sample{d: time.Duration(p.max[i]) * time.Microsecond, n: n})
		}
	}
	return out
}

func (p *cyclictestParser) hint() string {
	return " (run cyclictest with -h N for a histogram or -v for every sample; -q alone prints only a summary)"
}
