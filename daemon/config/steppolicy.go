package config

import (
	"cmp"
	"math"

	"github.com/agentcgroup/agentcgroup/bpf/mempressure"
)

// StepPolicy is the step_policy map entry for a step of class under this
// profile: what the scheduler, the pressure probe and memcg_agent_ops read.
// The daemon writes it for the steps it manages; a static policy source
// (an evaluation's cpu-only configuration) writes the same value once.
func (p *Profile) StepPolicy(class string) mempressure.StepPolicy {
	v := mempressure.StepPolicy{
		Class:              Classes[class],
		WeightMulQ8:        uint32(math.Round(p.CPU.WeightMul * 256)),
		SliceNs:            uint64(p.CPU.Slice),
		CpuBurstCreditNs:   uint64(p.CPU.BurstCredit),
		CpuRefillNsPerS:    uint64(p.CPU.RefillPerSec),
		MemDelayA_ms:       uint32(p.Memory.DelayA.D().Milliseconds()),
		MemDelayK:          p.Memory.DelayK,
		MemDelayMaxMs:      uint32(p.Memory.DelayMax.D().Milliseconds()),
		MemProtectBudgetMs: uint32(p.Memory.ProtectBudget.D().Milliseconds()),
		// By default the CPU penalty acts at once where a freeze waits
		// freeze_after; cpu.penalty_score moves it on its own.
		PenaltyScore: cmp.Or(p.CPU.PenaltyScore, p.Escalation.FreezeScore),
	}
	if p.Memory.BurstCredit != Unlimited {
		v.MemBurstCreditBytes = uint64(p.Memory.BurstCredit)
	}
	if p.CPU.NoThrashPenalty {
		v.Flags |= 1
	}
	if p.Memory.Protect {
		v.Flags |= 2
	}
	return v
}
