package main

import (
	"io"

	"github.com/cilium/ebpf"

	"github.com/agentcgroup/agentcgroup/bpf/flatcg"
)

// schedulerLoader starts scx_agent_flatcg on the daemon's pinned maps, so
// the scheduler reads the policies the daemon writes and the pressure the
// probe records.
func schedulerLoader(policy, pressure *ebpf.Map) (io.Closer, error) {
	return flatcg.Load(flatcg.Config{PolicyMap: policy, PressureMap: pressure})
}
