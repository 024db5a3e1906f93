package sweep

import (
	"slices"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/daemon/config"
	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/trial"
)

const policy = `# a comment the rewrite drops
[profiles.interactive.cpu]
weight_mul = 4.0
[profiles.background.escalation]
throttle_score = 10
freeze_score = 30
`

// Without profiles every profile gets the field, tables it lacks are
// created, and the rest of the policy is kept.
func TestApplyEveryProfile(t *testing.T) {
	pt := []trial.Setting{{Param: "delay.a", Value: 1500}, {Param: "delay.k", Value: 3}, {Param: "thrash_threshold", Value: 50}, {Param: "penalty", Value: 0.5}}
	out, args, err := Apply(policy, nil, pt)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(args, []string{"-thrash-threshold", "50", "-thrash-penalty", "0.5"}) {
		t.Errorf("args %q", args)
	}
	c, err := config.Parse("out", []byte(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"interactive", "background"} {
		p := c.Profiles[name]
		sv := p.StepPolicy(name)
		if sv.MemDelayA_ms != 1500 || sv.MemDelayK != 3 || sv.PenaltyScore != 50 {
			t.Errorf("%s: step policy %+v", name, sv)
		}
	}
	if c.Profiles["interactive"].CPU.WeightMul != 4 || c.Profiles["background"].Escalation.FreezeScore != 30 {
		t.Errorf("fields outside the sweep changed:\n%s", out)
	}
}

func TestApplyKeepsPolicyForFlagsOnly(t *testing.T) {
	out, args, err := Apply(policy, []string{"background"}, []trial.Setting{{Param: "penalty", Value: 0.05}})
	if err != nil || out != policy || !slices.Equal(args, []string{"-thrash-penalty", "0.05"}) {
		t.Errorf("Apply = %q, %q, %v", out, args, err)
	}
}

func TestPointsSkipParametersThatDoNotAct(t *testing.T) {
	g := Grid{Axes: []Axis{{Param: "delay.a", Values: []float64{100, 200}}, {Param: "freeze_score", Values: []float64{40}}, {Param: "penalty", Values: []float64{0.1, 0.5}}}}
	count := func(name string, mode stack.Memory) int { return len(g.Points(stack.MustLookup(name, mode))) }
	for _, c := range []struct {
		name string
		mode stack.Memory
		want int
	}{
		{"baseline", "", 0}, {"cpu-only", "", 0}, {"mem-only", stack.MemMainline, 1}, {"mem-only", stack.MemFull, 2},
		{"joint", stack.MemMainline, 2}, {"joint", stack.MemFull, 4}, {"joint-partial", stack.MemFull, 4},
	} {
		if got := count(c.name, c.mode); got != c.want {
			t.Errorf("%s %s: %d points, want %d", c.name, c.mode, got, c.want)
		}
	}
	pts := g.Points(stack.MustLookup("joint", stack.MemFull))
	var labels []string
	for _, pt := range pts {
		labels = append(labels, Label("joint-full", pt))
	}
	want := "joint-full_a100ms_frz40_pen0.1 joint-full_a100ms_frz40_pen0.5 joint-full_a200ms_frz40_pen0.1 joint-full_a200ms_frz40_pen0.5"
	if strings.Join(labels, " ") != want {
		t.Errorf("labels %v, want %s", labels, want)
	}
}

func TestFlagIn(t *testing.T) {
	for _, args := range [][]string{{"-thrash-penalty", "0.5"}, {"--thrash-penalty=0.5"}, {"-slice", "1ms", "-thrash-penalty=1"}} {
		if !FlagIn(args, "-thrash-penalty") {
			t.Errorf("%q: flag not found", args)
		}
	}
	if FlagIn([]string{"-thrash-penalty-extra", "1", "-slice", "1ms"}, "-thrash-penalty") {
		t.Errorf("a longer flag name matched")
	}
}
