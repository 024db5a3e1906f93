package trial

// EvidenceFile holds what the enforcement stack itself reported about one
// trial: the policy and pressure map entries, the scheduler's counters and
// the daemon's actions, read at the end of the measured phase. A report
// calls a configuration by its name only when this file shows its
// mechanisms engaged.
const EvidenceFile = "evidence.json"

// SchedulerStatsFile is the scheduler's own report (scx_agent_flatcg
// -stats-file), asked for at the end of the measured phase.
const SchedulerStatsFile = "logs/scheduler-stats.json"

// Evidence is the content of EvidenceFile. Maps are keyed by cgroup path
// relative to the cgroup2 mount.
type Evidence struct {
	// CgroupIDs maps each step and session to its cgroup id (the key of
	// every BPF map).
	CgroupIDs map[string]uint64 `json:"cgroup_ids,omitempty"`

	// PolicyMapID and PressureMapID are the kernel ids of the pinned
	// step_policy and step_pressure maps; the scheduler's report names the
	// instances it read, so equal ids prove the two sides shared them.
	PolicyMapID   uint32 `json:"policy_map_id,omitempty"`
	PressureMapID uint32 `json:"pressure_map_id,omitempty"`
	// PolicyWrites counts step_policy entries the runner wrote itself (a
	// static policy source); the daemon's writes show in Daemon.
	PolicyWrites int `json:"policy_writes,omitempty"`
	// Policies and Pressure are the pinned maps' entries at the end.
	Policies map[string]PolicyEntry   `json:"policies,omitempty"`
	Pressure map[string]PressureEntry `json:"pressure,omitempty"`

	Scheduler *SchedulerEvidence `json:"scheduler,omitempty"`
	Daemon    *DaemonEvidence    `json:"daemon,omitempty"`

	// TaskPolicies is, in partial mode, each workload's scheduling policy
	// as its process reported it at start (7 = SCHED_EXT), by workload.
	TaskPolicies map[string]int `json:"task_policies,omitempty"`

	// Errors are evidence that could not be read.
	Errors []string `json:"errors,omitempty"`
}

// PolicyEntry is the part of a step_policy entry a reader needs.
type PolicyEntry struct {
	Class       uint32 `json:"class"`
	Flags       uint32 `json:"flags"`
	WeightMulQ8 uint32 `json:"weight_mul_q8"`
	// PenaltyScore is the thrash score at which the scheduler penalizes
	// the step (0: the scheduler's default).
	PenaltyScore uint32 `json:"penalty_score,omitempty"`
	SliceNs      uint64 `json:"slice_ns,omitempty"`
	BoostCredit  uint64 `json:"cpu_burst_credit_ns,omitempty"`
}

// PressureEntry is a step_pressure entry.
type PressureEntry struct {
	ThrashScore  uint32 `json:"thrash_score"`
	TotalEvents  uint64 `json:"total_events"`
	TotalDelayNs uint64 `json:"total_delay_ns"`
	MaxScore     uint32 `json:"max_score,omitempty"` // highest score the sampler saw
}

// SchedulerEvidence is the scheduler's report, cgroup ids turned into paths.
type SchedulerEvidence struct {
	Mode          string `json:"mode"`
	PolicyMapID   uint32 `json:"policy_map_id"`
	PressureMapID uint32 `json:"pressure_map_id"`
	// PenaltyScore is the scheduler's default penalty threshold.
	PenaltyScore uint32                     `json:"penalty_score"`
	Cgroups      map[string]SchedulerCgroup `json:"cgroups"`
	// ChargeCapped counts runtime charges cut to one slice (the vCPU
	// was stopped by the host).
	ChargeCapped uint64 `json:"charge_capped,omitempty"`
	// PolicyLookups and PolicyHits count the scheduler's step_policy
	// lookups and those that found an entry.
	PolicyLookups uint64 `json:"policy_lookups,omitempty"`
	PolicyHits    uint64 `json:"policy_hits,omitempty"`
}

// SchedulerCgroup is one cgroup's scheduler counters.
type SchedulerCgroup struct {
	Weight      uint32 `json:"weight"`
	RuntimeNs   uint64 `json:"runtime_ns"`
	Boosts      uint64 `json:"boosts"`
	Penalties   uint64 `json:"penalties"`
	PenalizedNs uint64 `json:"penalized_ns,omitempty"` // CPU time charged while penalized
	ThrottledNs uint64 `json:"throttled_ns,omitempty"`
}

// DaemonEvidence summarises agentcgroupd's actions from its event log and
// its status at the end of the measured phase.
type DaemonEvidence struct {
	MemoryMode string `json:"memory_mode"`
	CPUPolicy  string `json:"cpu_policy,omitempty"`
	Probe      string `json:"probe,omitempty"`
	// StepsCreated counts steps the daemon registered (each one a
	// step_policy entry it wrote).
	StepsCreated int `json:"steps_created"`
	// Transitions counts escalation transitions by step path and target
	// state ("THROTTLED", "SOFT_PAUSED", "KILLED") plus "thaw".
	Transitions map[string]map[string]int `json:"transitions,omitempty"`
	// Kills lists each kill with its cause.
	Kills []DaemonKill `json:"kills,omitempty"`
	// Bursts counts memory burst credit grants by step path.
	Bursts map[string]int `json:"bursts,omitempty"`
	// MemcgOps holds memcg_agent_ops' counters in full mode.
	MemcgOps map[string]uint64 `json:"memcg_ops,omitempty"`
	// Protection holds the daemon's memory.low protection counters in
	// mainline mode: granted (steps), charged_ms (protection time under
	// reclaim), revoked_budget, revoked_max, revoked_oom, low_bytes.
	Protection map[string]uint64 `json:"protection,omitempty"`
	// NodeGuard holds the node guard's counters when the policy sets
	// daemon.node_available_floor: floor_bytes, min_available_bytes
	// (the lowest MemAvailable it saw), looks, kills.
	NodeGuard map[string]uint64 `json:"node_guard,omitempty"`
}

// DaemonKill is one kill.
type DaemonKill struct {
	Cgroup string `json:"cgroup"`
	Cause  string `json:"cause"`            // the kind: "max", "oom", "others_hurt", ...
	Detail string `json:"detail,omitempty"` // the transition's full cause
}
