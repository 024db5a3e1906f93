package trial

import (
	"time"

	"github.com/agentcgroup/agentcgroup/harness/stack"
)

// ExampleSpec returns a small valid spec: one interactive victim and one
// cpu_spin neighbour in separate sessions, baseline configuration. Tests and
// documentation start from it.
func ExampleSpec() *Spec {
	return &Spec{
		Version:     SpecVersion,
		ID:          "example-baseline-cpu_spin-r0",
		Scenario:    "example",
		Cell:        "baseline",
		Stack:       stack.MustLookup("baseline", ""),
		Neighbour:   "cpu_spin",
		Seed:        1,
		Warmup:      Duration(500 * time.Millisecond),
		Duration:    Duration(3 * time.Second),
		SampleEvery: Duration(100 * time.Millisecond),
		Sessions: []Session{
			{ID: "victim", Steps: []Step{{ID: "chat", Class: ClassInteractive,
				Budget: Budget{CPUWeight: 100, MemoryHigh: 64 << 20, MemoryMax: 128 << 20}}}},
			{ID: "noisy", Steps: []Step{{ID: "spin", Class: ClassBackground,
				Budget: Budget{CPUWeight: 100, PidsMax: 64}}}},
		},
		Victims: []Victim{{
			Name: "chat", Kind: VictimInteractive, Session: "victim", Step: "chat",
			Interactive: &InteractiveParams{
				Period: Duration(20 * time.Millisecond), CPULoops: 200000,
				TouchBytes: 256 << 10, WorkingSetBytes: 8 << 20,
			},
		}},
		Neighbours: []Neighbour{{
			Name: "spin", Kind: NeighbourCPUSpin, Session: "noisy", Step: "spin",
			CPUSpin: &CPUSpinParams{Threads: 4},
		}},
	}
}
