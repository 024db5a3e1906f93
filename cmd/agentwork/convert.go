package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/agentcgroup/agentcgroup/internal/fsutil"
	"github.com/agentcgroup/agentcgroup/workloads/trace"
)

func cmdTraceConvert(args []string) error {
	fs := flag.NewFlagSet("trace-convert", flag.ExitOnError)
	in := fs.String("in", "", "recorded task directory holding tool_calls.json and resources.json")
	out := fs.String("out", "", "output .json file (e.g. workloads/traces/<name>.json)")
	inDir := fs.String("in-dir", "", "convert every recording in this directory (one subdirectory each) and print a table")
	outDir := fs.String("out-dir", "", "with --in-dir: write <name>.json here for each accepted recording (default: only check)")
	name := fs.String("name", "", "trace name (default: the input directory's name)")
	source := fs.String("source", "", "where the recording came from (kept in the file); with --in-dir, {name} stands for each recording's name")
	license := fs.String("license", "", "the recording's licence (kept in the file)")
	fs.Parse(args)
	if *source == "" || *license == "" {
		return fmt.Errorf("--source and --license are required (attribution travels with converted data)")
	}
	if *inDir != "" {
		if *in != "" || *out != "" || *name != "" {
			return fmt.Errorf("--in-dir converts a directory of recordings: give --out-dir, not --in, --out or --name")
		}
		if !strings.Contains(*source, "{name}") {
			return fmt.Errorf("--source %q: with --in-dir, put {name} where each recording's name goes, so every file says which recording it came from", *source)
		}
		return convertDir(os.Stdout, *inDir, *outDir, *source, *license)
	}
	if *in == "" || *out == "" {
		return fmt.Errorf("give --in and --out (one recording) or --in-dir [--out-dir] (a directory of recordings)")
	}
	if *name == "" {
		*name = filepath.Base(filepath.Clean(*in))
	}
	t, err := trace.Convert(*in, *name, *source, *license)
	if err != nil {
		return err
	}
	return writeTrace(*out, t)
}

func writeTrace(path string, t *trace.Trace) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return fsutil.WriteFile(path, append(b, '\n'))
}

// convertDir converts every recording under dir, writes the accepted ones
// into outDir (when set) and prints one row per recording: what it holds,
// or why it was rejected. It fails when any recording was rejected.
func convertDir(w io.Writer, dir, outDir, source, license string) error {
	recs, err := trace.ConvertDir(dir, func(n string) string { return strings.ReplaceAll(source, "{name}", n) }, license)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "recording\tresult\tcalls\toverlapping\treordered\tmax parallel\tspan s\treason")
	rejected, calls, overlapping, reordered := 0, 0, 0, 0
	for _, r := range recs {
		if r.Err == nil && outDir != "" {
			r.Err = writeTrace(filepath.Join(outDir, r.Name+".json"), r.Trace)
		}
		if r.Err != nil {
			rejected++
			// the error names the recording's directory; the row does too
			reason := strings.TrimPrefix(r.Err.Error(), "recording "+r.Dir+": ")
			fmt.Fprintf(tw, "%s\trejected\t\t\t\t\t\t%s\n", r.Name, reason)
			continue
		}
		c := r.Trace.Concurrency()
		calls += len(r.Trace.Steps)
		overlapping += c.Overlapping
		reordered += r.Reordered
		fmt.Fprintf(tw, "%s\taccepted\t%d\t%d\t%d\t%d\t%.1f\t\n", r.Name, len(r.Trace.Steps), c.Overlapping, r.Reordered, c.MaxParallel, float64(c.SpanMs)/1000)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d recordings: %d accepted (%d calls, %d overlapping another call, %d listed out of start order), %d rejected",
		len(recs), len(recs)-rejected, calls, overlapping, reordered, rejected)
	if outDir != "" {
		fmt.Fprintf(w, "; accepted ones written to %s\n", outDir)
	} else {
		fmt.Fprintf(w, "; nothing written (no --out-dir)\n")
	}
	if rejected > 0 {
		return fmt.Errorf("%d of %d recordings rejected; the reason column says what to fix", rejected, len(recs))
	}
	return nil
}
