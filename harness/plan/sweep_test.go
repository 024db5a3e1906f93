package plan

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/daemon/config"
	"github.com/agentcgroup/agentcgroup/harness/scenario"
	"github.com/agentcgroup/agentcgroup/harness/trial"
)

const sweepText = `name = "sw"
seed = 3
repetitions = 2
kernel = "patched"
configurations = ["baseline", "cpu-only", "mem-only", "joint"]
memory_modes = ["mainline", "full"]
[timing]
duration = "5s"
[scheduler]
args = ["-slice", "10ms"]
[daemon]
config = """
[profiles.background.escalation]
throttle_score = 10
freeze_score = 30
[profiles.interactive.escalation]
exempt = true
"""
[[victims]]
name = "chat"
kind = "interactive"
period = "20ms"
[[neighbours]]
name = "hog"
set = "thrash"
kind = "memory_blowup"
target = "128M"
[sweep]
"delay.a" = ["100ms", "2s"]
freeze_score = [40]
thrash_threshold = [10, 50]
penalty = [0.1, 0.5]
profiles = ["background"]
`

func buildSweep(t *testing.T, text string) (*scenario.Scenario, *Plan) {
	t.Helper()
	s, err := scenario.Parse("sw.toml", []byte(text), scenario.Kernels{"patched": true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	return s, p
}

// Each configuration cell is followed by the product of the values of the
// parameters that act in it, and by nothing for those that do not.
func TestSweepCells(t *testing.T) {
	_, p := buildSweep(t, sweepText)
	want := []string{
		"baseline",
		"cpu-only",
		"mem-only-mainline",
		"mem-only-mainline_frz40",
		"mem-only-full",
		"mem-only-full_a100ms_frz40",
		"mem-only-full_a2s_frz40",
		"joint-mainline",
		"joint-mainline_frz40_thr10_pen0.1",
		"joint-mainline_frz40_thr10_pen0.5",
		"joint-mainline_frz40_thr50_pen0.1",
		"joint-mainline_frz40_thr50_pen0.5",
		"joint-full",
	}
	for _, a := range []string{"100ms", "2s"} {
		for _, thr := range []string{"10", "50"} {
			for _, pen := range []string{"0.1", "0.5"} {
				want = append(want, fmt.Sprintf("joint-full_a%s_frz40_thr%s_pen%s", a, thr, pen))
			}
		}
	}
	if !slices.Equal(p.Configs, want) {
		t.Errorf("cells:\n%s\nwant:\n%s", strings.Join(p.Configs, "\n"), strings.Join(want, "\n"))
	}
	// 21 cells x (1 set + solo) x 2 repetitions
	if len(p.Trials) != len(want)*2*2 {
		t.Errorf("%d trials, want %d", len(p.Trials), len(want)*4)
	}
	if p.Sweep == nil || !slices.Equal(p.Sweep.Params, []string{"delay.a", "freeze_score", "thrash_threshold", "penalty"}) ||
		!reflect.DeepEqual(p.Sweep.Values, [][]float64{{100, 2000}, {40}, {10, 50}, {0.1, 0.5}}) || len(p.Sweep.Cells) != len(want)-6 {
		t.Fatalf("plan sweep = %+v", p.Sweep)
	}
	c := p.Sweep.Cell("joint-full_a2s_frz40_thr10_pen0.5")
	if c == nil || c.Base != "joint-full" || !reflect.DeepEqual(c.Settings, []trial.Setting{
		{Param: "delay.a", Value: 2000}, {Param: "freeze_score", Value: 40}, {Param: "thrash_threshold", Value: 10}, {Param: "penalty", Value: 0.5}}) {
		t.Errorf("sweep cell = %+v", c)
	}
	if p.Sweep.Cell("joint-full") != nil {
		t.Errorf("a configuration cell is listed as a sweep cell")
	}
	// Paired: every cell of a repetition drives the workloads alike.
	seeds := map[int]uint64{}
	for _, tr := range p.Trials {
		if s, ok := seeds[tr.Rep]; ok && s != tr.Spec.Seed {
			t.Errorf("%s: seed %d, other trials of rep %d have %d", tr.ID, tr.Spec.Seed, tr.Rep, s)
		}
		seeds[tr.Rep] = tr.Spec.Seed
	}
}

// schedulerArgv is the scx_agent_flatcg command line the guest runner
// builds for a trial: the flags the configuration implies, its own, then
// the spec's (workloads/runner startStack and startHelper).
func schedulerArgv(sp trial.Spec) []string {
	a := append(sp.Stack.SchedulerArgs("/sys/fs/bpf/agentcgroup"), "-interval", "0", "-stats-file", "/tmp/sched.json")
	return append(a, sp.Scheduler.Args...)
}

// The values reach every trial of a sweep cell: the spec records them, the
// policy the daemon loads (and a static source writes from) carries the
// profile fields in the swept profiles only, and the scheduler's command
// line carries its flags after the scenario's own.
func TestSweepReachesTrialSpecs(t *testing.T) {
	s, p := buildSweep(t, sweepText)
	for _, tr := range p.Trials {
		sp := tr.Spec
		if err := sp.Validate(); err != nil {
			t.Fatalf("%s: %v", tr.ID, err)
		}
		cell := p.Sweep.Cell(tr.Config)
		if cell == nil {
			if sp.Sweep != nil || (sp.Policy != "" && sp.Policy != s.Policy) {
				t.Errorf("%s: configuration cell runs sweep %v or a changed policy", tr.ID, sp.Sweep)
			}
			if sp.Scheduler != nil && !slices.Equal(sp.Scheduler.Args, []string{"-slice", "10ms"}) {
				t.Errorf("%s: scheduler args %q", tr.ID, sp.Scheduler.Args)
			}
			continue
		}
		if !reflect.DeepEqual(sp.Sweep, cell.Settings) || sp.Stack.Label(true) != cell.Base || sp.Cell != tr.Config {
			t.Errorf("%s: spec sweep %v stack %s cell %s; plan says %v on %s", tr.ID, sp.Sweep, sp.Stack.Label(true), sp.Cell, cell.Settings, cell.Base)
		}
		val := map[string]float64{}
		for _, st := range sp.Sweep {
			val[st.Param] = st.Value
		}
		pol, err := config.Parse("policy.toml", []byte(sp.Policy))
		if err != nil {
			t.Fatalf("%s: the daemon would refuse the policy: %v", tr.ID, err)
		}
		bg := pol.Profiles["background"]
		sv := bg.StepPolicy("background")
		if bg.Escalation.FreezeScore != 40 || bg.Escalation.ThrottleScore != 10 {
			t.Errorf("%s: background escalation %+v", tr.ID, bg.Escalation)
		}
		if a, ok := val["delay.a"]; ok != (sp.Stack.Memory == "full") || sv.MemDelayA_ms != uint32(a) {
			t.Errorf("%s: step policy delay A %d ms, sweep %v", tr.ID, sv.MemDelayA_ms, sp.Sweep)
		}
		// The scheduler's threshold is the swept one where it is
		// swept, else it follows freeze_score.
		thr, swept := val["thrash_threshold"]
		if !swept {
			thr = 40
		}
		if sv.PenaltyScore != uint32(thr) {
			t.Errorf("%s: step policy penalty_score %d, want %v", tr.ID, sv.PenaltyScore, thr)
		}
		// The victim's profile is outside [sweep] profiles.
		in := pol.Profiles["interactive"]
		if in.Escalation.FreezeScore != 20 || in.CPU.PenaltyScore != 0 || in.Memory.DelayA != 0 || !in.Escalation.Exempt {
			t.Errorf("%s: interactive profile changed: %+v %+v", tr.ID, in.Escalation, in.Memory)
		}
		if !sp.Stack.Coupled {
			if _, ok := val["penalty"]; ok || swept {
				t.Errorf("%s: scheduler knobs swept in an uncoupled configuration: %v", tr.ID, sp.Sweep)
			}
			if sp.Scheduler != nil {
				t.Errorf("%s: %s starts the scheduler", tr.ID, sp.Stack.Name)
			}
			continue
		}
		argv := strings.Join(schedulerArgv(sp), " ")
		wantArgs := fmt.Sprintf("-pinned-maps /sys/fs/bpf/agentcgroup -interval 0 -stats-file /tmp/sched.json -slice 10ms -thrash-threshold %v -thrash-penalty %v", thr, val["penalty"])
		if argv != wantArgs {
			t.Errorf("%s: scheduler argv\n%s\nwant\n%s", tr.ID, argv, wantArgs)
		}
	}
}

// A policy-less scheduler sweep leaves the policy text exactly as written.
func TestSweepSchedulerOnlyKeepsPolicy(t *testing.T) {
	text := strings.Replace(sweepText, `"delay.a" = ["100ms", "2s"]
freeze_score = [40]
thrash_threshold = [10, 50]
penalty = [0.1, 0.5]
profiles = ["background"]`, "penalty = [0.5]", 1)
	s, p := buildSweep(t, text)
	if len(p.Sweep.Cells) != 2 {
		t.Fatalf("sweep cells %+v, want joint-mainline_pen0.5 and joint-full_pen0.5", p.Sweep.Cells)
	}
	for _, tr := range p.Trials {
		if tr.Spec.Policy != "" && tr.Spec.Policy != s.Policy {
			t.Errorf("%s: policy rewritten for a scheduler flag", tr.ID)
		}
	}
}

// Labels name the values, so long set names can make ids too long; the
// plan says so instead of producing invalid specs.
func TestSweepIDTooLong(t *testing.T) {
	text := strings.Replace(sweepText, `set = "thrash"`, `set = "a-neighbour-set-with-a-very-long-name"`, 1)
	s, err := scenario.Parse("sw.toml", []byte(text), scenario.Kernels{"patched": true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Build(s)
	if err == nil || !strings.Contains(err.Error(), "at most 64 fit: shorten the neighbour set names or sweep fewer parameters at once") {
		t.Errorf("error = %v", err)
	}
}

// The shipped sweep plans as its top comment says: 23 cells, 69 trials,
// the scheduler knobs only in joint, the victim's profile untouched.
func TestShippedSweepThrash(t *testing.T) {
	s, err := scenario.Load("../../scenarios/sweep-thrash.toml", scenario.Kernels{"stock": false, "patched": true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ResolveFiles("../.."); err != nil {
		t.Fatal(err)
	}
	p, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Configs) != 23 || len(p.Trials) != 69 || len(p.Sweep.Cells) != 20 {
		t.Errorf("%d cells (%d sweep cells), %d trials; the scenario's comment says 23 (20) and 69", len(p.Configs), len(p.Sweep.Cells), len(p.Trials))
	}
	for _, c := range p.Sweep.Cells {
		if c.Base == "mem-only" && len(c.Settings) != 1 {
			t.Errorf("%s: mem-only swept over %v", c.Cell, c.Settings)
		}
	}
	for _, tr := range p.Trials {
		if tr.Spec.Policy == "" {
			continue
		}
		pol, err := config.Parse("policy.toml", []byte(tr.Spec.Policy))
		if err != nil {
			t.Fatalf("%s: %v", tr.ID, err)
		}
		if in := pol.Profiles["interactive"]; !in.Escalation.Exempt || in.CPU.PenaltyScore != 0 {
			t.Errorf("%s: the victim's profile changed: %+v", tr.ID, in)
		}
	}
}
