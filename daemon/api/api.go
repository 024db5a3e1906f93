// Package api holds the agentcgroupd request and response types (JSON over
// HTTP on a unix socket) and a client for them.
package api

// SessionRequest starts a session.
type SessionRequest struct {
	ID     string            `json:"id"`
	Labels map[string]string `json:"labels,omitempty"`
}

// StepRequest creates a step; the caller then starts its command inside
// Cgroup (CLONE_INTO_CGROUP) and deletes the step when the command ends.
type StepRequest struct {
	Session string   `json:"session"`
	Step    string   `json:"step,omitempty"` // empty: the daemon picks one
	Class   string   `json:"class"`
	Argv    []string `json:"argv,omitempty"`
}

// Step describes a live step.
type Step struct {
	Session  string `json:"session"`
	Step     string `json:"step"`
	Class    string `json:"class"`
	Profile  string `json:"profile"`
	Cgroup   string `json:"cgroup"`
	CgroupID uint64 `json:"cgroup_id"`
	State    string `json:"state"`
	Freezes  int    `json:"freezes"`

	MemoryCurrent uint64            `json:"memory_current"`
	MemoryHigh    string            `json:"memory_high"`
	MemoryEvents  map[string]uint64 `json:"memory_events,omitempty"`
	ThrashScore   uint32            `json:"thrash_score"`
	Argv          []string          `json:"argv,omitempty"`
}

// Session describes a live session.
type Session struct {
	ID     string            `json:"id"`
	Labels map[string]string `json:"labels,omitempty"`
	Steps  []string          `json:"steps"`
}

// Status is the whole daemon view.
type Status struct {
	Config      string `json:"config"`
	MonitorOnly bool   `json:"monitor_only"`
	Probe       string `json:"probe"`     // attached symbol, or why not
	Scheduler   string `json:"scheduler"` // "off", "running", or the error
	// MemoryMode is "mainline" or "full" (memcg_agent_ops attached);
	// MemoryModeReason says why (the config, or what auto found).
	MemoryMode       string `json:"memory_mode"`
	MemoryModeReason string `json:"memory_mode_reason,omitempty"`
	// CPUPolicy is where profiles' CPU policy goes: "cgroup" (cpu.weight
	// scaled), "scheduler" (step_policy, read by sched_ext) or "off".
	CPUPolicy string `json:"cpu_policy,omitempty"`
	// MemcgOps holds memcg_agent_ops' global counters in full mode.
	MemcgOps *MemcgOpsStats `json:"memcg_ops,omitempty"`
	// Protection holds the mainline protector's counters (memory.low on
	// protected steps and their ancestors) in mainline mode.
	Protection *ProtectionStats `json:"protection,omitempty"`
	// NodeGuard holds the node guard's counters while
	// daemon.node_available_floor is set.
	NodeGuard  *NodeGuardStats `json:"node_guard,omitempty"`
	LastReload string          `json:"last_reload,omitempty"`
	Sessions   []Session       `json:"sessions"`
	Steps      []Step          `json:"steps"`
}

// MemcgOpsStats are memcg_agent_ops' counters since it was loaded.
type MemcgOpsStats struct {
	DelayCalls   uint64 `json:"delay_calls"`   // get_high_delay_ms calls
	DelayPolicy  uint64 `json:"delay_policy"`  // ... for a step with a policy
	DelayNonzero uint64 `json:"delay_nonzero"` // ... answered with a delay
	DelayCredit  uint64 `json:"delay_credit"`  // ... forgiven by the burst credit
	DelayMsSum   uint64 `json:"delay_ms_sum"`  // sum of the delays answered
	LowGrants    uint64 `json:"low_grants"`    // below_low protections granted
	MinGrants    uint64 `json:"min_grants"`    // below_min protections granted
	Revoked      uint64 `json:"revoked"`       // protections withdrawn (budget, max, oom)
}

// ProtectionStats are the mainline protector's counters since the daemon
// started.
type ProtectionStats struct {
	Mechanism string `json:"mechanism"` // "memory.low"
	Protected int    `json:"protected"` // steps protected now
	Granted   uint64 `json:"granted"`   // steps ever given protection
	// ChargedMs is protection time charged against budgets: while reclaim
	// that could take a protected step's pages ran.
	ChargedMs     uint64 `json:"charged_ms"`
	LowBytes      uint64 `json:"low_bytes"` // the base's memory.low: protected usage at the last look
	RevokedBudget uint64 `json:"revoked_budget"`
	RevokedMax    uint64 `json:"revoked_max"`
	RevokedOOM    uint64 `json:"revoked_oom"`
}

// NodeGuardStats are the node guard's counters since the daemon started.
type NodeGuardStats struct {
	FloorBytes     uint64 `json:"floor_bytes"`     // daemon.node_available_floor
	AvailableBytes uint64 `json:"available_bytes"` // MemAvailable at the last look
	// MinAvailableBytes is the lowest MemAvailable a look saw.
	MinAvailableBytes uint64 `json:"min_available_bytes"`
	Looks             uint64 `json:"looks"` // /proc/meminfo reads
	Kills             uint64 `json:"kills"` // steps killed (logged, in monitor-only mode)
	Errors            uint64 `json:"errors,omitempty"`
}

// Error is the body of every non-2xx response.
type Error struct {
	Error string `json:"error"`
}
