package runner

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/harness/vmtest"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// guestTrial runs spec with the guest's agentwork binary and loads the
// result with the same checks the host applies.
func guestTrial(t *testing.T, spec *trial.Spec, out string) trial.Raw {
	t.Helper()
	self, err := exec.LookPath("agentwork")
	if err != nil {
		t.Fatalf("agentwork is not on the guest's PATH: %v", err)
	}
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	specPath := filepath.Join(t.TempDir(), "spec.json")
	if err := fsutil.WriteJSON(specPath, spec); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := RunTrial(ctx, spec, Options{SpecPath: specPath, Out: out, Self: self, Log: os.Stdout}); err != nil {
		t.Fatal(err)
	}
	r, err := trial.Load(out)
	if err != nil {
		t.Fatalf("trial output does not load: %v", err)
	}
	if !r.Manifest.OK {
		t.Fatalf("trial %s not ok: %q", spec.ID, r.Manifest.Errors)
	}
	return r
}

func afterKV(t *testing.T, r trial.Raw, cg, file string) map[string]int64 {
	t.Helper()
	kv, err := cgroupfs.ParseFlatKeyed(cg+"/"+file, strings.NewReader(r.After.Cgroups[cg][file]))
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]int64, len(kv))
	for k, v := range kv {
		out[k] = int64(v)
	}
	return out
}

// Every victim and neighbour kind in one short trial, with zram swap: the
// trial completes, its output loads, and each workload did what it says.
func TestTrialEndToEnd(t *testing.T) {
	if vmtest.Run(t, vmtest.Options{CPUs: 2, MemMB: 1024, Timeout: 6 * time.Minute}) {
		r, err := trial.Load(filepath.Join(vmtest.OutDir(t), "trial"))
		if err != nil {
			t.Fatalf("copied-back trial does not load on the host: %v", err)
		}
		t.Logf("host loaded %s: %d timeline samples", r.Manifest.Spec.ID, len(r.Timeline))
		return
	}
	spec := trial.ExampleSpec()
	spec.ID = "e2e"
	spec.Warmup = trial.Duration(time.Second)
	spec.Duration = trial.Duration(4 * time.Second)
	spec.Swap.ZramMB = 128
	spec.Sessions = []trial.Session{
		{ID: "victim", Steps: []trial.Step{
			{ID: "chat", Class: trial.ClassInteractive, Budget: trial.Budget{MemoryHigh: 64 << 20, MemoryMax: 128 << 20}},
			{ID: "build", Class: trial.ClassToolBurst, Budget: trial.Budget{MemoryHigh: 128 << 20, PidsMax: 64}},
		}},
		{ID: "noisy", Steps: []trial.Step{
			{ID: "spin", Class: trial.ClassBackground, Budget: trial.Budget{CPUWeight: 50, CPUMax: "50000 100000"}},
			{ID: "forks", Class: trial.ClassBackground, Budget: trial.Budget{PidsMax: 12}},
			// 24M: under TCG the blow-up faults in only about 11 MiB/s
			// here, and at 48M it ended the trial at 45 MiB in some runs.
			{ID: "hog", Class: trial.ClassBackground, Budget: trial.Budget{MemoryHigh: 24 << 20, MemoryMax: 96 << 20}},
		}},
	}
	spec.Victims = []trial.Victim{
		{Name: "chat", Kind: trial.VictimInteractive, Session: "victim", Step: "chat",
			Interactive: &trial.InteractiveParams{Period: trial.Duration(20 * time.Millisecond), CPULoops: 100_000, TouchBytes: 64 << 10, WorkingSetBytes: 4 << 20}},
		{Name: "build", Kind: trial.VictimToolBurst, Session: "victim", Step: "build",
			ToolBurst: &trial.ToolBurstParams{Children: 3, Parallel: 3, CPULoops: 200_000, AllocBytes: 2 << 20}},
		{Name: "agent", Kind: trial.VictimTrace, Session: "victim",
			Trace: &trial.TraceParams{Trace: "encode__httpx-2701", Compress: 20, MemScale: 0.5,
				StepClass: trial.ClassToolBurst, StepBudget: trial.Budget{MemoryMax: 64 << 20}}},
	}
	spec.Neighbours = []trial.Neighbour{
		{Name: "spin", Kind: trial.NeighbourCPUSpin, Session: "noisy", Step: "spin", CPUSpin: &trial.CPUSpinParams{Threads: 2}},
		// Each child lives 250 ms, so twelve are alive at once even when a
		// fork takes tens of ms (TCG on a loaded host); at 50 ms the storm
		// sometimes never had twelve and never met pids.max.
		{Name: "forks", Kind: trial.NeighbourForkStorm, Session: "noisy", Step: "forks", ForkStorm: &trial.ForkStormParams{Concurrency: 32, Hold: trial.Duration(250 * time.Millisecond)}},
		{Name: "hog", Kind: trial.NeighbourMemoryBlowup, Session: "noisy", Step: "hog",
			MemoryBlowup: &trial.MemoryBlowupParams{TargetBytes: 160 << 20, RateBytesPerSec: 80 << 20}},
	}
	r := guestTrial(t, spec, "/out/trial")
	m := r.Manifest
	for _, v := range m.Victims {
		t.Logf("victim %s: %d done, %d failed, p99 %d us", v.Name, v.Count, v.Failed, r.Merged(v.Name).ValueAtQuantile(99))
		if v.Count == 0 {
			t.Errorf("victim %s completed nothing", v.Name)
		}
	}
	// interactive: one request per period over the measured phase
	if n := m.Victims[0].Count; n != 200 {
		t.Errorf("interactive completed %d requests, want 4s/20ms = 200", n)
	}
	if m.Swap == "" {
		t.Error("zram swap requested but none recorded")
	}
	// The runner (this process) is exempt from the OOM killer, so a
	// trial that runs the guest out of memory loses workloads, not itself.
	if b, err := os.ReadFile("/proc/self/oom_score_adj"); err != nil || strings.TrimSpace(string(b)) != "-1000" {
		t.Errorf("runner oom_score_adj %q (%v), want -1000", b, err)
	}
	for _, n := range m.Neighbours {
		t.Logf("neighbour %s: ops %d failed %d exit %d %s", n.Name, n.Count, n.Failed, n.ExitCode, n.Error)
	}
	hog := afterKV(t, r, trial.StepPath("noisy", "hog"), "memory.events")
	if hog["high"] == 0 {
		t.Errorf("memory_blowup past memory.high raised no high events: %v", hog)
	}
	// The spinner competes at a low weight, so it may never reach its
	// quota; what must hold is that the quota was applied and never exceeded.
	spinCg := trial.StepPath("noisy", "spin")
	if got := strings.TrimSpace(r.After.Cgroups[spinCg]["cpu.max"]); got != "50000 100000" {
		t.Errorf("cpu_spin's cpu.max is %q, want the budget 50000 100000", got)
	}
	spin := afterKV(t, r, spinCg, "cpu.stat")
	if limit := spin["nr_periods"] * 55_000; spin["nr_periods"] > 0 && spin["usage_usec"] > limit {
		t.Errorf("cpu_spin under cpu.max 50%% used %d us in %d periods (more than 55%%): %v", spin["usage_usec"], spin["nr_periods"], spin)
	}
	forks := afterKV(t, r, trial.StepPath("noisy", "forks"), "pids.events")
	if forks["max"] == 0 || m.Neighbours[1].Failed == 0 {
		t.Errorf("fork_storm never hit pids.max 12 (pids.events %v, refused %d)", forks, m.Neighbours[1].Failed)
	}
	if m.Neighbours[1].Count == 0 {
		t.Error("fork_storm reaped no children")
	}
	// each replayed tool call had its own step cgroup
	steps := 0
	for cg := range r.After.Cgroups {
		if filepath.Dir(cg) == trial.SessionPath("victim") && filepath.Base(cg) != "step_chat" && filepath.Base(cg) != "step_build" && filepath.Base(cg) != "step_"+TraceDriverStep("agent") {
			steps++
		}
	}
	if int64(steps) < m.Victims[2].Count {
		t.Errorf("%d trace step cgroups for %d replayed steps", steps, m.Victims[2].Count)
	}
	if len(r.Timeline) == 0 {
		t.Error("empty timeline")
	}
}

// A CPU-spinning neighbour must hurt the interactive victim on the default
// scheduler; this is the premise every configuration is measured against.
// The neighbour's step has ten times the victim's cpu.weight and the victim
// needs a quarter of a CPU, more than its 2*100/1100 share, so the effect is
// large. Solo and contended runs alternate. The assertion is on medians:
// under TCG on a shared host a 150-sample p99 is the second-largest sample
// and swings 11-21 ms solo, so tail ratios (1.27x-2x seen) would test the
// host, not the neighbour. p99s are logged for the record.
func TestCPUSpinHurtsInteractive(t *testing.T) {
	if vmtest.Run(t, vmtest.Options{CPUs: 2, MemMB: 512, Timeout: 5 * time.Minute}) {
		return
	}
	const reps = 3
	p50s := map[bool][]float64{}
	for rep := 0; rep < reps; rep++ {
		for _, solo := range []bool{true, false} {
			spec := trial.ExampleSpec()
			spec.Duration = trial.Duration(3 * time.Second)
			spec.Seed = 42                                   // same requests in every run
			spec.Victims[0].Interactive.CPULoops = 2_000_000 // ~5 ms of CPU every 20 ms
			spec.Sessions[1].Steps[0].Budget.CPUWeight = 1000
			spec.ID = fmt.Sprintf("cpu_spin-r%d", rep)
			if solo {
				spec.ID, spec.Solo, spec.Neighbours = fmt.Sprintf("solo-r%d", rep), true, nil
			}
			r := guestTrial(t, spec, "/out/"+spec.ID)
			h := r.Merged("chat")
			t.Logf("%s: n=%d p50 %d us p99 %d us max %d us", spec.ID, h.TotalCount(), h.ValueAtQuantile(50), h.ValueAtQuantile(99), h.Max())
			p50s[solo] = append(p50s[solo], float64(h.ValueAtQuantile(50)))
		}
	}
	solo, spin := p50s[true], p50s[false]
	slices.Sort(solo)
	slices.Sort(spin)
	ratio := spin[reps/2] / solo[reps/2]
	fmt.Printf("median p50 of %d runs: solo %.0f us, with cpu_spin x4 %.0f us (x%.2f)\n", reps, solo[reps/2], spin[reps/2], ratio)
	// Harm must show in every run, not only in a lucky one.
	if spin[0] <= solo[reps-1] {
		t.Errorf("cpu_spin did not raise every run's p50: lowest contended %.0f us vs highest solo %.0f us", spin[0], solo[reps-1])
	}
	if ratio < 1.3 {
		t.Errorf("cpu_spin raised the median p50 only x%.2f (%.0f -> %.0f us); want at least 1.3x", ratio, solo[reps/2], spin[reps/2])
	}
}

// daemonPolicy is a small agentcgroupd policy for the mem-only trial.
const daemonPolicy = `
[daemon]
socket = "/run/agentcgroup/agentcgroupd.sock"
metrics_addr = ""
state_dir = "/run/agentcgroup"
event_log = "-"
cgroup_mount = "/sys/fs/cgroup"
base = "agentcgroup"
pin_dir = "/sys/fs/bpf/agentcgroup"
probe = "auto"
tick = "50ms"

[profiles.interactive]
class = "interactive"
[profiles.interactive.memory]
high = "64MiB"
max = "128MiB"

[profiles.tool_burst]
class = "tool_burst"
[profiles.tool_burst.memory]
high = "128MiB"
max = "256MiB"

[profiles.background]
class = "background"
[profiles.background.memory]
high = "48MiB"
max = "96MiB"
`

// With a daemon, sessions and steps are created through its API: it knows
// every step by class, and the trial still produces a valid output.
func TestTrialWithDaemon(t *testing.T) {
	if vmtest.Run(t, vmtest.Options{CPUs: 2, MemMB: 1024, Timeout: 5 * time.Minute}) {
		return
	}
	spec := trial.ExampleSpec()
	spec.ID = "mem-only"
	spec.Cell, spec.Stack = "mem-only", stack.MustLookup("mem-only", stack.MemMainline)
	spec.Policy = daemonPolicy
	spec.Neighbours[0] = trial.Neighbour{Name: "hog", Kind: trial.NeighbourMemoryBlowup, Session: "noisy", Step: "spin",
		MemoryBlowup: &trial.MemoryBlowupParams{TargetBytes: 80 << 20, RateBytesPerSec: 80 << 20}}
	spec.Sessions[1].Steps[0].Budget = trial.Budget{MemoryHigh: 48 << 20, MemoryMax: 96 << 20}
	spec.Victims = append(spec.Victims, trial.Victim{Name: "agent", Kind: trial.VictimTrace, Session: "victim",
		Trace: &trial.TraceParams{Trace: "encode__httpx-2701", Compress: 20, MemScale: 0.5, MaxSteps: 4, StepClass: trial.ClassToolBurst}})
	r := guestTrial(t, spec, "/out/trial")
	p := r.Manifest.Processes
	if len(p) != 1 || p[0].Name != "daemon" || !p[0].Started || p[0].CPUMs <= 0 {
		t.Fatalf("processes %+v (want the daemon, started, with its CPU time)", p)
	}
	// The span after readiness splits at the measured phase's start; each
	// reading has 10 ms resolution.
	if d := p[0]; d.MeasureMs < spec.Duration.D().Seconds()*1000*0.9 || d.MeasureMs > d.SteadyMs ||
		math.Abs(d.SetupCPUMs+d.MeasureCPUMs-d.SteadyCPUMs) > 20 {
		t.Errorf("daemon CPU split: setup %.0f + measured %.0f ms over %.0f ms, steady %.0f ms over %.0f ms",
			d.SetupCPUMs, d.MeasureCPUMs, d.MeasureMs, d.SteadyCPUMs, d.SteadyMs)
	}
	log, err := os.ReadFile(filepath.Join("/out/trial", p[0].Log))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"step":"chat"`, `"step":"spin"`, `"step":"agent-000"`, "class=interactive", "class=tool_burst"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("daemon log lacks %s:\n%s", want, log)
		}
	}
	if r.Manifest.Victims[1].Count == 0 {
		t.Error("trace victim replayed nothing through the daemon")
	}
}
