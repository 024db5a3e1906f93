package flatcg

import (
	"fmt"
	"sort"

	"github.com/cilium/ebpf"
)

// Report is what the scheduler can prove about one run: which map
// instances it read its step policy and pressure from (so a caller can
// check they are the ones the policy writer pinned), its scheduler-wide
// counters and every cgroup's stats. scx_agent_flatcg -stats-file writes it
// as JSON.
type Report struct {
	Mode          string `json:"mode"` // "full" or "partial"
	PolicyMapID   uint32 `json:"policy_map_id"`
	PressureMapID uint32 `json:"pressure_map_id"`
	// PenaltyScore is the default penalty threshold in force (a step's
	// step_policy.penalty_score overrides it).
	PenaltyScore uint32        `json:"penalty_score"`
	Counters     Counters      `json:"counters"`
	Cgroups      []CgroupEntry `json:"cgroups"`
}

// CgroupEntry is one cgroup's line of a Report.
type CgroupEntry struct {
	ID          uint64 `json:"id"`
	Level       uint32 `json:"level"`
	Weight      uint32 `json:"weight"` // cpu.weight as the scheduler saw it
	RuntimeNs   uint64 `json:"runtime_ns"`
	Enqueues    uint64 `json:"enqueues"`
	Boosts      uint64 `json:"boosts"`
	Penalties   uint64 `json:"penalties"`
	PenalizedNs uint64 `json:"penalized_ns"`
	ThrottledNs uint64 `json:"throttled_ns"`
	Throttles   uint64 `json:"throttles"`
	MaxWaitNs   uint64 `json:"max_wait_ns"` // longest enqueue-to-run wait of its tasks
}

// Report collects a Report now.
func (s *Scheduler) Report(partial bool, penaltyScore uint32) (Report, error) {
	r := Report{Mode: "full", PenaltyScore: penaltyScore}
	if partial {
		r.Mode = "partial"
	}
	var err error
	if r.PolicyMapID, err = mapID(s.objs.StepPolicies); err != nil {
		return r, err
	}
	if r.PressureMapID, err = mapID(s.objs.StepPressures); err != nil {
		return r, err
	}
	if r.Counters, err = s.Counters(); err != nil {
		return r, err
	}
	cgs, err := s.Cgroups()
	if err != nil {
		return r, err
	}
	for _, c := range cgs {
		r.Cgroups = append(r.Cgroups, CgroupEntry{
			ID: c.ID, Level: c.Level, Weight: c.Weight, RuntimeNs: c.RuntimeNs, Enqueues: c.Enqueues,
			Boosts: c.Boosts, Penalties: c.Penalties, PenalizedNs: c.PenalizedNs, ThrottledNs: c.ThrottledNs, Throttles: c.Throttles,
			MaxWaitNs: c.MaxWaitNs,
		})
	}
	sort.Slice(r.Cgroups, func(i, j int) bool { return r.Cgroups[i].ID < r.Cgroups[j].ID })
	return r, nil
}

// MapID is the kernel's id of a map instance: two handles on one pinned
// map report the same id.
func MapID(m *ebpf.Map) (uint32, error) { return mapID(m) }

func mapID(m *ebpf.Map) (uint32, error) {
	info, err := m.Info()
	if err != nil {
		return 0, fmt.Errorf("flatcg: map info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return 0, fmt.Errorf("flatcg: the kernel does not report map ids")
	}
	return uint32(id), nil
}
