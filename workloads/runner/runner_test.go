package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// The test binary stands in for agentwork when a workload re-executes
// itself (tool-burst children, trace steps).
func TestMain(m *testing.M) {
	if ok, err := ChildMain(os.Args[1:]); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func soon() (time.Time, error) { return time.Now().Add(20 * time.Millisecond), nil }

func TestRunVictimInteractiveStandalone(t *testing.T) {
	v := trial.ExampleSpec().Victims[0]
	hlog := filepath.Join(t.TempDir(), "chat.hlog")
	res := RunVictim(context.Background(), VictimRun{Victim: v, Seed: 1, Ready: soon, Dur: 500 * time.Millisecond, Hlog: hlog})
	if res.Error != "" {
		t.Fatal(res.Error)
	}
	if res.Count != 25 {
		t.Errorf("%d requests in 500 ms at 20 ms, want 25", res.Count)
	}
	h, err := MergeLog(hlog)
	if err != nil || h.TotalCount() != res.Count {
		t.Fatalf("log holds %v values (%v), result says %d", h.TotalCount(), err, res.Count)
	}
}

func TestRunVictimToolBurstAndTraceStandalone(t *testing.T) {
	for _, v := range []trial.Victim{
		{Name: "build", Kind: trial.VictimToolBurst, ToolBurst: &trial.ToolBurstParams{Children: 2, Parallel: 2, CPULoops: 1000, AllocBytes: 1 << 20}},
		{Name: "agent", Kind: trial.VictimTrace, Trace: &trial.TraceParams{Trace: "encode__httpx-2701", Compress: 50, MemScale: 0.1, MaxSteps: 3}},
	} {
		hlog := filepath.Join(t.TempDir(), v.Name+".hlog")
		// A trace ends after its max_steps steps; its window is only a
		// bound, generous because each step is a fork+exec that takes
		// seconds on a loaded host.
		dur := 2 * time.Second
		if v.Kind == trial.VictimTrace {
			dur = 20 * time.Second
		}
		res := RunVictim(context.Background(), VictimRun{Victim: v, Seed: 1, Ready: soon, Dur: dur, Hlog: hlog})
		if res.Error != "" || res.Count == 0 || res.Failed != 0 {
			t.Errorf("%s: %+v", v.Name, res)
		}
		if v.Kind == trial.VictimTrace && (res.Count != 3 || res.Nominal <= 0) {
			t.Errorf("trace: %d steps (max_steps 3), nominal %v", res.Count, res.Nominal)
		}
	}
}

func TestRunVictimUnknownTrace(t *testing.T) {
	v := trial.Victim{Name: "agent", Kind: trial.VictimTrace, Trace: &trial.TraceParams{Trace: "no-such", Compress: 1, MemScale: 1}}
	res := RunVictim(context.Background(), VictimRun{Victim: v, Ready: soon, Dur: time.Second, Hlog: filepath.Join(t.TempDir(), "x.hlog")})
	if !strings.Contains(res.Error, "no-such") {
		t.Errorf("error %q does not name the missing trace", res.Error)
	}
}

// A configuration whose scheduler binary is missing stops before any
// workload starts and still leaves a loadable output that says why. The
// cgroup mount is a scratch directory: nothing on the host is touched.
func TestTrialMissingSchedulerIsRecorded(t *testing.T) {
	spec := trial.ExampleSpec()
	spec.Cell, spec.Stack = "cpu-only", stack.MustLookup("cpu-only", "")
	spec.Policy = "[daemon]\npin_dir = \"" + t.TempDir() + "\"\n"
	spec.Scheduler = &trial.Process{Binary: "no-such-scheduler-binary"}
	out := filepath.Join(t.TempDir(), "trial")
	var log strings.Builder
	if err := RunTrial(context.Background(), spec, Options{Out: out, Mount: t.TempDir(), Self: "/bin/false", Log: &log}); err != nil {
		t.Fatal(err)
	}
	r, err := trial.Load(out)
	if err != nil {
		t.Fatalf("output of a failed trial must still load: %v", err)
	}
	m := r.Manifest
	if m.OK || len(m.Errors) == 0 || !strings.Contains(m.Errors[0], "no-such-scheduler-binary not found on PATH") {
		t.Fatalf("ok=%v errors=%q", m.OK, m.Errors)
	}
	if m.Victims[0].Error != "not run" || len(m.Processes) != 1 || m.Processes[0].Started {
		t.Errorf("victims %+v processes %+v", m.Victims, m.Processes)
	}
	if _, err := os.Stat(out + ".partial"); !os.IsNotExist(err) {
		t.Error("partial directory left behind")
	}
}
