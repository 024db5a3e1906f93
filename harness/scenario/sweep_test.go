package scenario

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/harness/sweep"
)

// sweepBase runs every configuration in both memory modes on the patched
// kernel with a policy of two profiles; tests append a [sweep] table, which
// starts on line sweepLine.
const sweepBase = `name = "sw"
seed = 1
kernel = "patched"
configurations = ["baseline", "cpu-only", "mem-only", "joint"]
memory_modes = ["mainline", "full"]
[timing]
duration = "5s"
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
kind = "memory_blowup"
target = "128M"
`

var sweepLine = strings.Count(sweepBase, "\n") + 1

func TestSweepParses(t *testing.T) {
	// Written out of order, nested and quoted: the grid is in the
	// parameters' own order, durations in milliseconds.
	s, err := Parse("sw.toml", []byte(sweepBase+`[sweep]
penalty = [0.1, 0.5]
"delay.a" = ["100ms", "2s"]
delay.k = [1, 2]
thrash_threshold = [10, 100]
freeze_score = [40]
profiles = ["background"]
`), kernels)
	if err != nil {
		t.Fatal(err)
	}
	want := sweep.Grid{Axes: []sweep.Axis{
		{Param: "delay.a", Values: []float64{100, 2000}},
		{Param: "delay.k", Values: []float64{1, 2}},
		{Param: "freeze_score", Values: []float64{40}},
		{Param: "thrash_threshold", Values: []float64{10, 100}},
		{Param: "penalty", Values: []float64{0.1, 0.5}},
	}, Profiles: []string{"background"}}
	if !reflect.DeepEqual(s.Sweep, want) {
		t.Errorf("grid = %+v\nwant %+v", s.Sweep, want)
	}
}

func TestSweepProblems(t *testing.T) {
	l := sweepLine + 1 // the first line after [sweep]
	for _, c := range []struct {
		name, sweep string
		line        int
		field, msg  string
	}{
		{"unknown parameter", "delay.b = [1]\n", l, "sweep.delay.b", "unknown parameter; sweepable: delay.a, delay.k, freeze_score, thrash_threshold, penalty"},
		{"not an array", "penalty = 0.5\n", l, "sweep.penalty", "want an array of values, e.g. [0.1, 0.25, 0.5]"},
		{"empty", "penalty = []\n", l, "sweep.penalty", "empty: list at least one value"},
		{"wrong type", "thrash_threshold = [10, \"30\"]\n", l, "sweep.thrash_threshold", `value 2: want an integer, got string "30"`},
		{"float for an integer", "delay.k = [1.5]\n", l, "sweep.delay.k", "value 1: want an integer, got float 1.5"},
		{"score out of range", "freeze_score = [0, 30]\n", l, "sweep.freeze_score", "value 1: 0 is out of range 1..1000 (the thrash_score scale"},
		{"k out of range", "delay.k = [5]\n", l, "sweep.delay.k", "5 is out of range 1..4"},
		{"penalty out of range", "penalty = [0, 1.5]\n", l, "sweep.penalty", "value 2: 1.5 is out of range (0, 1]"},
		{"duration type", "\"delay.a\" = [100]\n", l, "sweep.delay.a", `want a duration string, got integer 100, e.g. ["100ms", "2s"]`},
		{"sub-millisecond", "\"delay.a\" = [\"1500us\"]\n", l, "sweep.delay.a", "whole milliseconds"},
		{"duration out of range", "\"delay.a\" = [\"0s\"]\n", l, "sweep.delay.a", "0s is out of range 1ms..10m"},
		{"duplicate", "thrash_threshold = [10, 10]\n", l, "sweep.thrash_threshold", "value 2: 10 listed twice"},
		{"indistinguishable", "penalty = [0.25, 0.251]\n", l, "sweep.penalty", "0.251 gives the same setting as 0.25 (scx_agent_flatcg keeps the factor in steps of 1/256)"},
		{"profiles only", "profiles = [\"background\"]\n", sweepLine, "sweep", "no parameter to sweep"},
		{"profiles without a policy parameter", "penalty = [0.5]\nprofiles = [\"background\"]\n", l + 1, "sweep.profiles", "none of the swept parameters sets a policy profile field"},
		{"bad profiles", "freeze_score = [40]\nprofiles = \"background\"\n", l + 1, "sweep.profiles", "want a non-empty array of policy profile names"},
		// Checked against the policy once it is known.
		{"unknown profile", "freeze_score = [40]\nprofiles = [\"tool_burst\"]\n", l, "sweep.freeze_score", `profile "tool_burst" is not in the policy (it has background, interactive); fix [sweep] profiles`},
		{"policy refuses", "freeze_score = [5, 40]\nprofiles = [\"background\"]\n", l, "sweep.freeze_score", "freeze_score=5: the daemon would refuse the policy: profiles.background.escalation.freeze_score: 5 is below throttle_score 10"},
	} {
		t.Run(c.name, func(t *testing.T) {
			want(t, problemsOf(t, sweepBase+"[sweep]\n"+c.sweep), c.line, c.field, c.msg)
		})
	}
}

// A parameter must act in at least one configuration the scenario runs;
// one that acts in some of them is fine (planning skips the others).
func TestSweepNeedsAConfigurationItActsIn(t *testing.T) {
	mainline := strings.Replace(sweepBase, `memory_modes = ["mainline", "full"]`, `memory_mode = "mainline"`, 1)
	ps := problemsOf(t, mainline+"[sweep]\n\"delay.a\" = [\"100ms\"]\n")
	want(t, ps, sweepLine+1, "sweep.delay.a", "acts only in configurations in memory mode full (only memcg_agent_ops reads the curve), and this scenario runs none of them (configurations baseline, cpu-only, mem-only, joint, memory modes mainline): add one or drop the parameter")

	noJoint := strings.Replace(sweepBase, `"mem-only", "joint"]`, `"mem-only"]`, 1)
	ps = problemsOf(t, noJoint+"[sweep]\nthrash_threshold = [10]\npenalty = [0.5]\nfreeze_score = [40]\n")
	want(t, ps, sweepLine+1, "sweep.thrash_threshold", "acts only in coupled configurations (joint, joint-partial)")
	want(t, ps, sweepLine+2, "sweep.penalty", "acts only in coupled configurations")
	for _, p := range ps {
		if p.Field == "sweep.freeze_score" {
			t.Errorf("freeze_score acts in mem-only, yet: %v", p)
		}
	}
}

// A swept scheduler flag may not also be set by hand.
func TestSweepFlagAlsoInSchedulerArgs(t *testing.T) {
	text := strings.Replace(sweepBase, "[daemon]", "[scheduler]\nargs = [\"-thrash-penalty=0.5\"]\n[daemon]", 1)
	ps := problemsOf(t, text+"[sweep]\npenalty = [0.1]\n")
	want(t, ps, 9, "scheduler.args", "sets -thrash-penalty, which [sweep] penalty varies; drop one of them")
}

// A config_file policy is checked when ResolveFiles reads it.
func TestSweepPolicyFromFile(t *testing.T) {
	root := t.TempDir()
	policy := "[profiles.background.escalation]\nthrottle_score = 50\n"
	if err := os.WriteFile(filepath.Join(root, "p.toml"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	i := strings.Index(sweepBase, "config = ")
	j := strings.Index(sweepBase, "[[victims]]")
	text := sweepBase[:i] + "config_file = \"p.toml\"\n" + sweepBase[j:] + "[sweep]\nfreeze_score = [40, 60]\n"
	s, err := Parse("sw.toml", []byte(text), kernels)
	if err != nil {
		t.Fatal(err)
	}
	err = s.ResolveFiles(root)
	if err == nil || !strings.Contains(err.Error(), "sweep.freeze_score: freeze_score=40: the daemon would refuse the policy") || strings.Contains(err.Error(), "freeze_score=60") {
		t.Errorf("ResolveFiles: %v\nwant only freeze_score 40 refused (below throttle_score 50)", err)
	}
}
