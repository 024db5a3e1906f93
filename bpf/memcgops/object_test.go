package memcgops

import (
	"time"

	"testing"

	"github.com/cilium/ebpf"
)

// The embedded object must carry the struct_ops map, the shared maps with
// the layouts of agentcgroup.h, and the loader's tunables.
func TestEmbeddedObject(t *testing.T) {
	spec, err := loadMao()
	if err != nil {
		t.Fatal(err)
	}
	ops, ok := spec.Maps["memcg_agent_ops"]
	if !ok || ops.Type != ebpf.StructOpsMap {
		t.Fatalf("no memcg_agent_ops struct_ops map in the object (maps: %v)", spec.Maps)
	}
	for _, name := range []string{"step_policies", "step_pressures"} {
		m := spec.Maps[name]
		if m == nil || m.Type != ebpf.Hash || m.KeySize != 8 || m.MaxEntries != 4096 {
			t.Fatalf("%s: want a 4096-entry hash keyed by a u64 cgroup id, got %+v", name, m)
		}
	}
	if s := spec.Maps["step_policies"].ValueSize; s != 64 {
		t.Fatalf("step_policy value is %d bytes; agentcgroup.h's struct step_policy is 64", s)
	}
	if s := spec.Maps["step_pressures"].ValueSize; s != 40 {
		t.Fatalf("step_pressure value is %d bytes; agentcgroup.h's struct step_pressure is 40", s)
	}
	for _, v := range []string{"class_delay_a_ms", "default_delay_k", "default_protect_budget_ms", "protect_min"} {
		if _, ok := spec.Variables[v]; !ok {
			t.Errorf("object lacks tunable %s", v)
		}
	}
	var budgetMs uint32
	if err := spec.Variables["default_protect_budget_ms"].Get(&budgetMs); err != nil {
		t.Fatal(err)
	}
	if time.Duration(budgetMs)*time.Millisecond != DefaultProtectBudget {
		t.Errorf("default_protect_budget_ms is %d; DefaultProtectBudget says %v", budgetMs, DefaultProtectBudget)
	}
	for _, p := range []string{"mao_get_high_delay_ms", "mao_below_low", "mao_below_min", "mao_cgroup_online", "mao_cgroup_offline"} {
		if spec.Programs[p] == nil || spec.Programs[p].Type != ebpf.StructOps {
			t.Errorf("object lacks struct_ops program %s", p)
		}
	}
}

func TestLoadOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"k", Options{DelayK: 5}},
		{"budget", Options{ProtectBudget: -1}},
	} {
		// Supported() fails first on a host without the patched kernel;
		// check the option validation itself where it is reachable.
		if err := validate(tc.opts); err == nil {
			t.Errorf("%s: invalid options accepted: %+v", tc.name, tc.opts)
		}
	}
}
