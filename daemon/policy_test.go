package daemon

import (
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/config"
)

func TestPolicyValue(t *testing.T) {
	p := &config.Profile{Class: "interactive",
		CPU: config.CPU{WeightMul: 1.5, Slice: config.Duration(3 * time.Millisecond), BurstCredit: config.Duration(50 * time.Millisecond),
			RefillPerSec: config.Duration(100 * time.Millisecond), NoThrashPenalty: true},
		Memory: config.Memory{BurstCredit: 64 << 20, DelayA: config.Duration(20 * time.Millisecond), DelayK: 2,
			DelayMax: config.Duration(time.Second), ProtectBudget: config.Duration(500 * time.Millisecond), Protect: true}}
	v := policyValue("interactive", p, false)
	if v.Class != 1 || v.WeightMulQ8 != 384 || v.SliceNs != 3e6 || v.CpuBurstCreditNs != 50e6 || v.CpuRefillNsPerS != 100e6 {
		t.Fatalf("cpu fields %+v", v)
	}
	if v.MemBurstCreditBytes != 64<<20 || v.MemDelayA_ms != 20 || v.MemDelayK != 2 || v.MemDelayMaxMs != 1000 || v.MemProtectBudgetMs != 500 {
		t.Fatalf("memory fields %+v", v)
	}
	if v.Flags != 3 {
		t.Fatalf("flags %b, want NO_THRASH_PENALTY|PROTECT_MEM", v.Flags)
	}
	if m := policyValue("interactive", p, true); m.Class != 0 || m.WeightMulQ8 != 0 || m.Flags != 0 {
		t.Fatalf("monitor-only must register without policy: %+v", m)
	}
}

func TestClientExplainsMissingDaemon(t *testing.T) {
	_, err := api.NewClient(t.TempDir() + "/none.sock").Status()
	if err == nil || !strings.Contains(err.Error(), "is the daemon running") {
		t.Fatalf("error %v does not point at the daemon", err)
	}
}
