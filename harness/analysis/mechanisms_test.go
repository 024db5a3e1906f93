package analysis

import (
	"strconv"
	"testing"

	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// rawFor builds a trial whose victim step is interactive and whose
// neighbour step crossed memory.high, for the configuration named.
func rawFor(name string, ev trial.Evidence) *trial.Raw {
	sp := trial.ExampleSpec()
	sp.Stack = stack.MustLookup(name, stack.MemMainline)
	events := func(high int) map[string]map[string]string {
		return map[string]map[string]string{
			trial.StepPath("noisy", "spin"):  {"memory.events": "high " + itoa(high) + "\n"},
			trial.StepPath("victim", "chat"): {"memory.events": "high 0\n"},
		}
	}
	return &trial.Raw{Manifest: trial.Manifest{Spec: *sp}, Before: trial.Snapshot{Cgroups: events(0)},
		After: trial.Snapshot{Cgroups: events(5)}, Evidence: ev}
}

func itoa(n int) string { return strconv.Itoa(n) }

func statusOf(checks []Check, m string) Check {
	for _, c := range checks {
		if c.Mechanism == m {
			return c
		}
	}
	return Check{}
}

func TestMechanismsBaselineWithAScheduler(t *testing.T) {
	checks, _ := Mechanisms(rawFor("baseline", trial.Evidence{Scheduler: &trial.SchedulerEvidence{Mode: "full"}}))
	if c := statusOf(checks, MechScheduler); c.Status != Unexpected {
		t.Errorf("baseline with a scheduler report: %+v", c)
	}
}

func TestMechanismsPartialNeedsExtTasks(t *testing.T) {
	victim, noisy := trial.StepPath("victim", "chat"), trial.StepPath("noisy", "spin")
	ev := trial.Evidence{
		PolicyMapID: 3, PressureMapID: 4, PolicyWrites: 2,
		Policies: map[string]trial.PolicyEntry{victim: {Class: 1, BoostCredit: 1}, noisy: {Class: 3}},
		Scheduler: &trial.SchedulerEvidence{Mode: "partial", PolicyMapID: 3, PressureMapID: 4,
			Cgroups: map[string]trial.SchedulerCgroup{victim: {RuntimeNs: 1, Boosts: 2}}},
		TaskPolicies: map[string]int{"chat": 7, "spin": 0},
	}
	checks, _ := Mechanisms(rawFor("cpu-only-partial", ev))
	if c := statusOf(checks, MechScheduler); c.Status != Missing {
		t.Errorf("a workload left on the fair class: %+v", c)
	}
	ev.TaskPolicies["spin"] = 7
	checks, _ = Mechanisms(rawFor("cpu-only-partial", ev))
	for _, m := range []string{MechScheduler, MechPolicy, MechBoost} {
		if c := statusOf(checks, m); c.Status != Engaged {
			t.Errorf("%s: %+v", m, c)
		}
	}
	if c := statusOf(checks, MechDaemon); c.Status != Absent {
		t.Errorf("cpu-only daemon: %+v", c)
	}
}

// joint: a neighbour whose peak score reached its penalty score must have
// been penalized; pressure below it leaves the penalty idle, not missing.
func TestMechanismsJointPenalty(t *testing.T) {
	victim, noisy := trial.StepPath("victim", "chat"), trial.StepPath("noisy", "spin")
	ev := func(peak uint32, penalties uint64) trial.Evidence {
		return trial.Evidence{
			PolicyMapID: 3, PressureMapID: 4,
			Policies: map[string]trial.PolicyEntry{victim: {Class: 1}, noisy: {Class: 3, PenaltyScore: 30}},
			Pressure: map[string]trial.PressureEntry{noisy: {MaxScore: peak}},
			Scheduler: &trial.SchedulerEvidence{Mode: "full", PolicyMapID: 3, PressureMapID: 4, PenaltyScore: 20,
				Cgroups: map[string]trial.SchedulerCgroup{victim: {RuntimeNs: 1}, noisy: {RuntimeNs: 1, Penalties: penalties}}},
			Daemon: &trial.DaemonEvidence{MemoryMode: "mainline", StepsCreated: 2,
				Transitions: map[string]map[string]int{noisy: {"THROTTLED": 1}}},
		}
	}
	for _, c := range []struct {
		peak      uint32
		penalties uint64
		want      Status
	}{{25, 0, Idle}, {30, 0, Missing}, {40, 9, Engaged}} {
		checks, counts := Mechanisms(rawFor("joint", ev(c.peak, c.penalties)))
		if got := statusOf(checks, MechPenalty); got.Status != c.want {
			t.Errorf("peak %d (step's penalty score 30, scheduler default 20), %d penalties: %+v, want %s", c.peak, c.penalties, got, c.want)
		}
		if got := statusOf(checks, MechReaction); got.Status != Engaged {
			t.Errorf("reaction: %+v", got)
		}
		if c.want == Engaged && counts.PenaltyApplies != 1 {
			t.Errorf("counts %+v", counts)
		}
	}
}

// A trace replay makes its step cgroups during the run, so the spec does
// not list them: runtime charged to one of them in a session of the trial
// shows the scheduler engaged, and a step of a session outside the trial
// does not.
func TestMechanismsSchedulerCountsReplaySteps(t *testing.T) {
	r := rawFor("cpu-only", trial.Evidence{Scheduler: &trial.SchedulerEvidence{Mode: "full",
		Cgroups: map[string]trial.SchedulerCgroup{trial.StepPath("elsewhere", "call-0001"): {RuntimeNs: 5}}}})
	sp := &r.Manifest.Spec
	sp.Victims = append(sp.Victims, trial.Victim{Name: "agent", Kind: trial.VictimTrace, Session: "agent"})
	checks, _ := Mechanisms(r)
	if c := statusOf(checks, MechScheduler); c.Status != Missing {
		t.Errorf("runtime only outside the trial's sessions: %+v", c)
	}
	r.Evidence.Scheduler.Cgroups[trial.StepPath("agent", "call-0001")] = trial.SchedulerCgroup{RuntimeNs: 5}
	checks, _ = Mechanisms(r)
	if c := statusOf(checks, MechScheduler); c.Status != Engaged {
		t.Errorf("runtime on a replayed step: %+v", c)
	}
}

// mem-only in mainline mode protects a victim whose profile asks for it
// with memory.low: a daemon that set none, or reported nothing (one that
// predates it), did not; one that did but saw no reclaim was idle.
func TestMechanismsMainlineProtection(t *testing.T) {
	victim, noisy := trial.StepPath("victim", "chat"), trial.StepPath("noisy", "spin")
	ev := func(flags uint32, prot map[string]uint64) trial.Evidence {
		return trial.Evidence{PolicyMapID: 3, PressureMapID: 4,
			Policies: map[string]trial.PolicyEntry{victim: {Class: 1, Flags: flags}, noisy: {Class: 3}},
			Daemon: &trial.DaemonEvidence{MemoryMode: "mainline", StepsCreated: 2, Protection: prot,
				Transitions: map[string]map[string]int{noisy: {"THROTTLED": 1}}}}
	}
	for _, c := range []struct {
		name  string
		flags uint32
		prot  map[string]uint64
		want  Status
	}{
		{"not asked", 0, nil, Idle},
		{"old daemon", 2, nil, Missing},
		{"none set", 2, map[string]uint64{"granted": 0}, Missing},
		{"no reclaim", 2, map[string]uint64{"granted": 1}, Idle},
		{"held", 2, map[string]uint64{"granted": 1, "charged_ms": 300}, Engaged},
		{"revoked", 2, map[string]uint64{"granted": 1, "revoked_max": 1}, Engaged},
	} {
		checks, _ := Mechanisms(rawFor("mem-only", ev(c.flags, c.prot)))
		if got := statusOf(checks, MechProtect); got.Status != c.want {
			t.Errorf("%s: %+v, want %s", c.name, got, c.want)
		}
	}
	checks, _ := Mechanisms(rawFor("baseline", trial.Evidence{}))
	if got := statusOf(checks, MechProtect); got.Status != Absent {
		t.Errorf("baseline: %+v", got)
	}
}

// The node guard is idle when the policy leaves it off or MemAvailable
// never reached its floor, engaged when it killed, and missing when the
// kernel's global OOM killer ended a task without the guard killing
// first; a task killed at its own memory.max is not the guard's business.
func TestMechanismsNodeGuard(t *testing.T) {
	noisy := trial.StepPath("noisy", "spin")
	guard := map[string]uint64{"floor_bytes": 48 << 20, "min_available_bytes": 30 << 20, "looks": 40}
	for _, c := range []struct {
		name   string
		guard  map[string]uint64
		kills  []trial.DaemonKill
		events string // the noisy step's memory.events after the trial
		want   Status
	}{
		{"off", nil, nil, "oom 0\noom_kill 1\n", Idle},
		{"nothing to guard", map[string]uint64{"floor_bytes": 48 << 20}, nil, "oom 0\noom_kill 0\n", Idle},
		{"above the floor", guard, nil, "oom 0\noom_kill 0\n", Idle},
		{"killed first", guard, []trial.DaemonKill{{Cgroup: noisy, Cause: "node_low"}}, "oom 0\noom_kill 0\n", Engaged},
		{"kernel first", guard, nil, "oom 0\noom_kill 1\n", Missing},
		{"own memory.max", guard, nil, "oom 1\noom_kill 1\n", Idle},
	} {
		r := rawFor("joint", trial.Evidence{Daemon: &trial.DaemonEvidence{MemoryMode: "mainline", StepsCreated: 2,
			NodeGuard: c.guard, Kills: c.kills}})
		r.After.Cgroups[noisy]["memory.events"] = c.events
		r.Before.Cgroups[noisy]["memory.events"] = "oom 0\noom_kill 0\n"
		checks, _ := Mechanisms(r)
		if got := statusOf(checks, MechNodeGuard); got.Status != c.want {
			t.Errorf("%s: %+v, want %s", c.name, got, c.want)
		}
	}
	if got := statusOf(first(Mechanisms(rawFor("cpu-only", trial.Evidence{}))), MechNodeGuard); got.Status != Absent {
		t.Errorf("cpu-only: %+v", got)
	}
}

func first(c []Check, _ Counts) []Check { return c }
