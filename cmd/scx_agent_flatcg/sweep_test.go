package main

import (
	"testing"

	"github.com/agentcgroup/agentcgroup/harness/plan"
	"github.com/agentcgroup/agentcgroup/harness/scenario"
)

// A scenario sweeping the scheduler's thrash knobs: the command line the
// guest runner builds for each joint trial sets what the trial's sweep
// point says, and the configuration cell keeps the defaults.
func TestSweptFlagsReachTheScheduler(t *testing.T) {
	s, err := scenario.Parse("sw.toml", []byte(`name = "sw"
seed = 1
configurations = ["cpu-only", "joint"]
[timing]
duration = "5s"
[daemon]
config = """
[profiles.background.escalation]
freeze_score = 30
"""
[[victims]]
name = "chat"
kind = "interactive"
period = "20ms"
[[neighbours]]
name = "hog"
kind = "memory_blowup"
target = "128M"
[sweep]
thrash_threshold = [10, 200]
penalty = [0.1, 1]
`), scenario.Kernels{"stock": false})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, tr := range p.Trials {
		sp := tr.Spec
		if sp.Scheduler == nil {
			continue
		}
		// As workloads/runner builds it: the configuration's flags, the
		// runner's, then the spec's.
		argv := append(sp.Stack.SchedulerArgs("/sys/fs/bpf/agentcgroup"), "-interval", "0", "-stats-file", "/tmp/s.json")
		argv = append(argv, sp.Scheduler.Args...)
		o, err := parseFlags(argv)
		if err != nil {
			t.Fatalf("%s: %v", tr.ID, err)
		}
		wantThr, wantQ8 := uint32(20), uint32(64) // the loader's defaults
		for _, st := range sp.Sweep {
			switch st.Param {
			case "thrash_threshold":
				wantThr = uint32(st.Value)
			case "penalty":
				wantQ8 = uint32(st.Value*256 + 0.5)
			}
		}
		if o.cfg.ThrashThreshold != wantThr || o.cfg.ThrashPenaltyQ8 != wantQ8 || o.pinned != "/sys/fs/bpf/agentcgroup" {
			t.Errorf("%s: threshold %d penalty %d/256 maps %q, want %d and %d/256", tr.ID, o.cfg.ThrashThreshold, o.cfg.ThrashPenaltyQ8, o.pinned, wantThr, wantQ8)
		}
		seen[tr.Config] = true
	}
	for _, c := range []string{"cpu-only", "joint", "joint_thr10_pen0.1", "joint_thr10_pen1", "joint_thr200_pen0.1", "joint_thr200_pen1"} {
		if !seen[c] {
			t.Errorf("no scheduler trial of cell %s (saw %v)", c, seen)
		}
	}
	if len(seen) != 6 {
		t.Errorf("cells with a scheduler: %v; cpu-only must not be swept (nothing writes the pressure its penalty reads)", seen)
	}
}
