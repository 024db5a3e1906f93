package analysis

import (
	"fmt"
	pathpkg "path"
	"sort"
	"strings"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/escalate"
	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// Mechanisms, in the order reports list them. Each is something a
// configuration's name promises; Check says from the stack's own counters
// whether it ran.
const (
	MechScheduler = "scheduler"         // scx_agent_flatcg scheduled the steps
	MechPolicy    = "step policy"       // every step's step_policy entry present, in the map the scheduler read
	MechBoost     = "boost"             // interactive victim steps got wakeup boosts
	MechDaemon    = "daemon"            // agentcgroupd managed the steps in the configured memory mode
	MechReaction  = "memory reaction"   // pressure on a step led to a daemon transition or a BPF delay
	MechProtect   = "memory protection" // protected victim steps kept their memory under reclaim
	MechPenalty   = "thrash penalty"    // a step over its penalty score was penalized by the scheduler
	MechNodeGuard = "node guard"        // the daemon killed before the kernel's global OOM killer had to
)

// MechanismNames lists every mechanism in report order.
var MechanismNames = []string{MechScheduler, MechPolicy, MechBoost, MechDaemon, MechReaction, MechProtect, MechNodeGuard, MechPenalty}

// Status of one mechanism in one trial.
type Status string

const (
	// Engaged: the configuration promises it and its counters show it ran.
	Engaged Status = "engaged"
	// Missing: promised, the conditions for it arose, and it did not run.
	Missing Status = "missing"
	// Idle: promised, but nothing in the trial called for it (e.g. no
	// step crossed its penalty score); not a failure, not evidence either.
	Idle Status = "idle"
	// Absent: not part of the configuration, and nothing ran.
	Absent Status = "-"
	// Unexpected: not part of the configuration, yet it ran.
	Unexpected Status = "unexpected"
)

// Check is one mechanism's status in one trial.
type Check struct {
	Mechanism string
	Status    Status
	Detail    string
}

// Counts are the actions behind the checks, summed over a trial.
type Counts struct {
	PolicyEntries  int // step_policy entries found for the trial's steps
	PolicyWrites   int // written by the runner (static source) or the daemon
	Boosts         uint64
	Penalties      uint64
	PenalizedMs    float64 // CPU time charged to steps while penalized
	PenaltyApplies int     // steps whose peak score reached their penalty score
	Throttles      int     // daemon transitions to THROTTLED
	Freezes        int
	Thaws          int
	Kills          map[string]int // by cause
	Bursts         int
	BPFDelays      uint64 // memcg_agent_ops delays answered (full mode)
	// Protections are below_low/below_min grants in full mode, steps the
	// daemon gave memory.low in mainline mode.
	Protections uint64
	Revoked     uint64
}

// classIDs match enum agc_class (bpf/include/agentcgroup.h).
var classIDs = map[string]uint32{trial.ClassInteractive: 1, trial.ClassToolBurst: 2, trial.ClassBackground: 3}

// daemonClass is the class a spec step is registered with (a step without
// one is a background step, as the runner registers it).
func daemonClass(c string) string {
	if c == "" || c == trial.ClassDefault {
		return trial.ClassBackground
	}
	return c
}

// Mechanisms checks every mechanism of one trial against its configuration.
func Mechanisms(r *trial.Raw) ([]Check, Counts) {
	sp := r.Manifest.Spec
	st := sp.Stack
	ev := r.Evidence
	var c Counts
	c.Kills = map[string]int{}
	var out []Check
	add := func(m string, s Status, format string, a ...any) {
		out = append(out, Check{Mechanism: m, Status: s, Detail: fmt.Sprintf(format, a...)})
	}
	steps := specSteps(sp)
	sched := ev.Scheduler
	d := ev.Daemon

	// scheduler
	switch {
	case st.Scheduler == stack.SchedNone && sched != nil:
		add(MechScheduler, Unexpected, "a scheduler report exists for a fair-class configuration")
	case st.Scheduler == stack.SchedNone:
		add(MechScheduler, Absent, "")
	case sched == nil:
		add(MechScheduler, Missing, "no scheduler report (%s)", strings.Join(ev.Errors, "; "))
	default:
		ran := ranSteps(sp, steps, sched)
		notExt := 0
		for _, p := range ev.TaskPolicies {
			if p != 7 {
				notExt++
			}
		}
		switch {
		case sched.Mode != string(st.Scheduler):
			add(MechScheduler, Missing, "ran in %s mode, configuration says %s", sched.Mode, st.Scheduler)
		case len(ran) == 0:
			add(MechScheduler, Missing, "no step's tasks were charged to the scheduler")
		case st.Scheduler == stack.SchedPartial && (len(ev.TaskPolicies) == 0 || notExt > 0):
			add(MechScheduler, Missing, "partial mode: %d of %d workloads not on SCHED_EXT", notExt, len(ev.TaskPolicies))
		default:
			add(MechScheduler, Engaged, "%d/%d steps ran on it (%s mode)", len(ran), len(steps), sched.Mode)
		}
	}

	// step policy
	for _, s := range steps {
		if p, ok := ev.Policies[s.path]; ok && p.Class == classIDs[daemonClass(s.class)] {
			c.PolicyEntries++
		}
	}
	c.PolicyWrites = ev.PolicyWrites
	if d != nil {
		c.PolicyWrites += d.StepsCreated
	}
	switch {
	case st.Policy == stack.PolicyNone && (len(ev.Policies) > 0 || ev.PolicyWrites > 0):
		add(MechPolicy, Unexpected, "%d step_policy entries in a configuration without a policy source", len(ev.Policies))
	case st.Policy == stack.PolicyNone:
		add(MechPolicy, Absent, "")
	case c.PolicyEntries < len(steps):
		add(MechPolicy, Missing, "%d/%d steps have their class's entry", c.PolicyEntries, len(steps))
	case sched != nil && (sched.PolicyMapID != ev.PolicyMapID || sched.PressureMapID != ev.PressureMapID):
		add(MechPolicy, Missing, "the scheduler read maps %d/%d, the policy was written to %d/%d: not shared",
			sched.PolicyMapID, sched.PressureMapID, ev.PolicyMapID, ev.PressureMapID)
	default:
		add(MechPolicy, Engaged, "%d/%d steps, from %s", c.PolicyEntries, len(steps), st.Policy)
	}

	// boost: an interactive victim step with boost credit, on the scheduler
	var boostSteps []string
	for _, s := range steps {
		if s.victim && daemonClass(s.class) == trial.ClassInteractive && ev.Policies[s.path].BoostCredit > 0 {
			boostSteps = append(boostSteps, s.path)
		}
	}
	if sched != nil {
		for _, s := range steps {
			c.Boosts += sched.Cgroups[s.path].Boosts
		}
	}
	switch {
	case st.Scheduler == stack.SchedNone || st.Policy == stack.PolicyNone:
		if st.Scheduler != stack.SchedNone && c.Boosts > 0 {
			add(MechBoost, Unexpected, "%d boosts without a step policy", c.Boosts)
		} else {
			add(MechBoost, Absent, "")
		}
	case len(boostSteps) == 0:
		add(MechBoost, Idle, "no interactive victim step with boost credit")
	default:
		var b uint64
		for _, p := range boostSteps {
			b += sched.Cgroups[p].Boosts
		}
		if b == 0 {
			add(MechBoost, Missing, "interactive victim steps got no boost")
		} else {
			add(MechBoost, Engaged, "%d boosts of interactive victim steps", b)
		}
	}

	// daemon and its reactions
	pressured := pressuredSteps(r)
	if d != nil {
		for _, tr := range d.Transitions {
			c.Throttles += tr["THROTTLED"]
			c.Freezes += tr["SOFT_PAUSED"]
			c.Thaws += tr["thaw"]
		}
		for _, k := range d.Kills {
			c.Kills[k.Cause]++
		}
		for _, n := range d.Bursts {
			c.Bursts += n
		}
		c.BPFDelays = d.MemcgOps["delay_nonzero"]
		c.Protections = d.MemcgOps["low_grants"] + d.MemcgOps["min_grants"]
		c.Revoked = d.MemcgOps["revoked"]
		if p := d.Protection; p != nil {
			c.Protections += p["granted"]
			c.Revoked += p["revoked_budget"] + p["revoked_max"] + p["revoked_oom"]
		}
	}
	switch {
	case !st.Daemon && d != nil:
		add(MechDaemon, Unexpected, "agentcgroupd ran in a configuration without it")
		add(MechReaction, Absent, "")
	case !st.Daemon:
		add(MechDaemon, Absent, "")
		add(MechReaction, Absent, "")
	case d == nil:
		add(MechDaemon, Missing, "no daemon evidence (%s)", strings.Join(ev.Errors, "; "))
		add(MechReaction, Missing, "")
	default:
		if d.MemoryMode != string(st.Memory) {
			add(MechDaemon, Missing, "memory mode %q, configuration says %q", d.MemoryMode, st.Memory)
		} else if d.StepsCreated == 0 {
			add(MechDaemon, Missing, "the daemon registered no step")
		} else {
			add(MechDaemon, Engaged, "%d steps, %s mode, cpu policy %s", d.StepsCreated, d.MemoryMode, d.CPUPolicy)
		}
		reacted := 0
		for _, p := range pressured {
			if d.Transitions[p]["THROTTLED"] > 0 {
				reacted++
			}
		}
		full := st.Memory == stack.MemFull && c.BPFDelays > 0
		switch {
		case len(pressured) == 0:
			add(MechReaction, Idle, "no step crossed memory.high")
		case reacted == 0 && !full:
			add(MechReaction, Missing, "%d steps crossed memory.high, the daemon marked none THROTTLED", len(pressured))
		default:
			add(MechReaction, Engaged, "%d/%d pressured steps throttled; %d freezes, %d kills, %d BPF delays",
				reacted, len(pressured), c.Freezes, len(d.Kills), c.BPFDelays)
		}
	}

	// memory protection: the daemon protects victim steps whose profile
	// sets memory.protect (the policy's flag), by memcg_agent_ops'
	// below_low in full mode and by memory.low in mainline mode.
	protected := 0
	for _, s := range steps {
		if s.victim && ev.Policies[s.path].Flags&2 != 0 {
			protected++
		}
	}
	switch {
	case !st.Daemon:
		add(MechProtect, Absent, "")
	case d == nil:
		add(MechProtect, Missing, "no daemon evidence")
	case protected == 0:
		add(MechProtect, Idle, "no victim step's profile protects it")
	case st.Memory == stack.MemFull:
		if c.Protections > 0 || c.Revoked > 0 {
			add(MechProtect, Engaged, "%d below_low/below_min grants, %d protections revoked", c.Protections, c.Revoked)
		} else {
			add(MechProtect, Idle, "reclaim never asked about a protected step")
		}
	case d.Protection == nil:
		add(MechProtect, Missing, "%d victim steps are to be protected; the daemon reported no memory.low protection (it predates it)", protected)
	case d.Protection["granted"] == 0:
		add(MechProtect, Missing, "%d victim steps are to be protected; the daemon set memory.low on none", protected)
	case d.Protection["charged_ms"] > 0 || c.Revoked > 0:
		add(MechProtect, Engaged, "%d steps under memory.low, %d ms of it under reclaim, %d revoked", d.Protection["granted"], d.Protection["charged_ms"], c.Revoked)
	default:
		add(MechProtect, Idle, "%d steps under memory.low; no reclaim reached them", d.Protection["granted"])
	}

	// node guard: with daemon.node_available_floor set, the daemon kills
	// the largest killable step before the node runs out; a task the
	// kernel's global OOM killer ended means it was too late.
	globalOOM := globalOOMKills(r)
	g := map[string]uint64(nil)
	if d != nil {
		g = d.NodeGuard
	}
	guardKills := c.Kills[string(escalate.KillNodeLow)]
	switch {
	case !st.Daemon:
		add(MechNodeGuard, Absent, "")
	case d == nil:
		add(MechNodeGuard, Missing, "no daemon evidence")
	case g == nil:
		add(MechNodeGuard, Idle, "off: the policy sets no daemon.node_available_floor")
	case g["looks"] == 0 && globalOOM == 0:
		add(MechNodeGuard, Idle, "no step it may kill (not exempt, max_freezes set) ran, so it never looked")
	case guardKills == 0 && globalOOM > 0:
		add(MechNodeGuard, Missing, "the kernel's OOM killer ended %d tasks first (MemAvailable floor %d MiB, lowest seen %d MiB)",
			globalOOM, g["floor_bytes"]>>20, g["min_available_bytes"]>>20)
	case guardKills > 0:
		add(MechNodeGuard, Engaged, "%d steps killed at the %d MiB MemAvailable floor (lowest seen %d MiB); the kernel's OOM killer ended %d tasks",
			guardKills, g["floor_bytes"]>>20, g["min_available_bytes"]>>20, globalOOM)
	default:
		add(MechNodeGuard, Idle, "MemAvailable stayed above the %d MiB floor (lowest seen %d MiB)", g["floor_bytes"]>>20, g["min_available_bytes"]>>20)
	}

	// thrash penalty: coupled configurations, where a step's peak score
	// reached its penalty score
	if sched != nil {
		for _, s := range steps {
			c.Penalties += sched.Cgroups[s.path].Penalties
			c.PenalizedMs += float64(sched.Cgroups[s.path].PenalizedNs) / 1e6
		}
	}
	var due, penalized []string
	for _, s := range steps {
		pe, ok := ev.Pressure[s.path]
		thr := ev.Policies[s.path].PenaltyScore
		if thr == 0 && sched != nil {
			thr = sched.PenaltyScore
		}
		if !ok || thr == 0 || pe.MaxScore < thr || ev.Policies[s.path].Flags&1 != 0 {
			continue
		}
		due = append(due, s.path)
		if sched != nil && sched.Cgroups[s.path].Penalties > 0 {
			penalized = append(penalized, s.path)
		}
	}
	c.PenaltyApplies = len(due)
	switch {
	case !st.Coupled:
		if c.Penalties > 0 {
			add(MechPenalty, Unexpected, "%d penalized enqueues without coupling", c.Penalties)
		} else {
			add(MechPenalty, Absent, "")
		}
	case len(due) == 0:
		add(MechPenalty, Idle, "no step's pressure reached its penalty score (peak %d)", peakScore(ev))
	case len(penalized) == 0:
		add(MechPenalty, Missing, "%d steps reached their penalty score, none was penalized", len(due))
	default:
		add(MechPenalty, Engaged, "%d/%d steps over their penalty score penalized (%d enqueues, %.0f ms of CPU)", len(penalized), len(due), c.Penalties, c.PenalizedMs)
	}
	return out, c
}

type specStep struct {
	path, class string
	victim      bool
}

// specSteps are the trial's step cgroups (trace steps made during the run
// are covered by their session's counters, not listed here).
func specSteps(sp trial.Spec) []specStep {
	victimSess := map[string]bool{}
	for _, v := range sp.Victims {
		victimSess[v.Session] = true
	}
	var out []specStep
	for _, se := range sp.Sessions {
		for _, s := range se.Steps {
			out = append(out, specStep{path: trial.StepPath(se.ID, s.ID), class: s.Class, victim: victimSess[se.ID]})
		}
	}
	return out
}

// ranSteps are the step cgroups the scheduler charged runtime to: the
// spec's steps, and the steps a trace replay made during the run in any of
// the trial's sessions (the spec cannot list those; the scheduler's report
// names them by path).
func ranSteps(sp trial.Spec, steps []specStep, sched *trial.SchedulerEvidence) []string {
	seen := map[string]bool{}
	var ran []string
	for _, s := range steps {
		if sched.Cgroups[s.path].RuntimeNs > 0 && !seen[s.path] {
			seen[s.path] = true
			ran = append(ran, s.path)
		}
	}
	sessions := map[string]bool{}
	for _, se := range sp.Sessions {
		sessions[trial.SessionPath(se.ID)] = true
	}
	for _, v := range sp.Victims {
		sessions[trial.SessionPath(v.Session)] = true
	}
	for _, n := range sp.Neighbours {
		sessions[trial.SessionPath(n.Session)] = true
	}
	for path, cg := range sched.Cgroups {
		parent, leaf := pathpkg.Split(path)
		if cg.RuntimeNs > 0 && !seen[path] && strings.HasPrefix(leaf, "step_") && sessions[strings.TrimSuffix(parent, "/")] {
			seen[path] = true
			ran = append(ran, path)
		}
	}
	sort.Strings(ran)
	return ran
}

// globalOOMKills counts the spec steps' tasks the kernel's OOM killer
// ended for the node rather than at the step's own memory.max: their
// memory.events oom_kill grew and oom (reclaim at the step's limit
// failing) did not.
func globalOOMKills(r *trial.Raw) int {
	n := 0
	for _, s := range specSteps(r.Manifest.Spec) {
		if a, b, ok := stepEvents(r, s.path); ok && a["oom_kill"] > b["oom_kill"] && a["oom"] == b["oom"] {
			n += int(a["oom_kill"] - b["oom_kill"])
		}
	}
	return n
}

// pressuredSteps are the spec steps whose memory.events "high" grew.
func pressuredSteps(r *trial.Raw) []string {
	var out []string
	for _, s := range specSteps(r.Manifest.Spec) {
		if a, b, ok := stepEvents(r, s.path); ok && a["high"] > b["high"] {
			out = append(out, s.path)
		}
	}
	sort.Strings(out)
	return out
}

// stepEvents is a step's memory.events after and before the trial, and
// whether both snapshots had it.
func stepEvents(r *trial.Raw, path string) (after, before map[string]uint64, ok bool) {
	a, err1 := cgroupfs.ParseFlatKeyed(path, strings.NewReader(r.After.Cgroups[path]["memory.events"]))
	b, err2 := cgroupfs.ParseFlatKeyed(path, strings.NewReader(r.Before.Cgroups[path]["memory.events"]))
	return a, b, err1 == nil && err2 == nil
}

func peakScore(ev trial.Evidence) uint32 {
	var m uint32
	for _, p := range ev.Pressure {
		m = max(m, p.MaxScore)
	}
	return m
}

// MechRow is one configuration's mechanisms over all its trials (every
// neighbour set and the solo runs).
type MechRow struct {
	Config string
	Stack  stack.Config
	Trials int
	// Status counts trials per mechanism and status.
	Status map[string]map[Status]int
	// Details keeps one explanation per mechanism and status (the first
	// trial's, by trial id), for the report's notes.
	Details map[string]map[Status]string
	Counts  Counts // summed over the trials
	// Verdict says whether the configuration may be called by its name.
	Honest  bool
	Verdict string
}

// MechanismTable summarises every configuration's mechanisms.
func (s *Summary) MechanismTable() []*MechRow {
	var out []*MechRow
	for _, cfg := range s.Configs {
		row := &MechRow{Config: cfg, Status: map[string]map[Status]int{}, Details: map[string]map[Status]string{}}
		row.Counts.Kills = map[string]int{}
		for _, tr := range s.Trials {
			if tr.Config != cfg {
				continue
			}
			row.Trials++
			row.Stack = tr.Stack
			for _, c := range tr.Checks {
				if row.Status[c.Mechanism] == nil {
					row.Status[c.Mechanism] = map[Status]int{}
					row.Details[c.Mechanism] = map[Status]string{}
				}
				row.Status[c.Mechanism][c.Status]++
				if _, ok := row.Details[c.Mechanism][c.Status]; !ok && c.Detail != "" {
					row.Details[c.Mechanism][c.Status] = tr.ID + ": " + c.Detail
				}
			}
			row.Counts.add(tr.Counts)
		}
		row.Honest, row.Verdict = verdict(row)
		out = append(out, row)
	}
	return out
}

func (c *Counts) add(o Counts) {
	c.PolicyEntries += o.PolicyEntries
	c.PolicyWrites += o.PolicyWrites
	c.Boosts += o.Boosts
	c.Penalties += o.Penalties
	c.PenalizedMs += o.PenalizedMs
	c.PenaltyApplies += o.PenaltyApplies
	c.Throttles += o.Throttles
	c.Freezes += o.Freezes
	c.Thaws += o.Thaws
	for k, v := range o.Kills {
		c.Kills[k] += v
	}
	c.Bursts += o.Bursts
	c.BPFDelays += o.BPFDelays
	c.Protections += o.Protections
	c.Revoked += o.Revoked
}

// verdict: a configuration is called by its name only when no promised
// mechanism went missing and nothing it excludes ran, and every promised
// mechanism engaged in at least one trial. A mechanism that was never
// called for is named, since the configuration was then not tested on it.
func verdict(r *MechRow) (bool, string) {
	if r.Trials == 0 {
		return false, "no usable trials"
	}
	var bad, idle []string
	promised := false
	for _, m := range MechanismNames {
		st := r.Status[m]
		if st[Absent]+st[Unexpected] < r.Trials {
			promised = true
		}
		switch {
		case st[Unexpected] > 0:
			bad = append(bad, fmt.Sprintf("%s ran in %d/%d trials but is not part of it", m, st[Unexpected], r.Trials))
		case st[Missing] > 0:
			bad = append(bad, fmt.Sprintf("%s did not engage in %d/%d trials where it should have", m, st[Missing], r.Trials))
		case st[Engaged] == 0 && st[Idle] > 0:
			idle = append(idle, m)
		}
	}
	switch {
	case len(bad) > 0:
		return false, "not as named: " + strings.Join(bad, "; ")
	case len(idle) > 0:
		return true, "as named, but never called for: " + strings.Join(idle, ", ")
	case !promised:
		return true, "as named: no enforcement mechanism ran"
	}
	return true, "as named: every mechanism engaged"
}
