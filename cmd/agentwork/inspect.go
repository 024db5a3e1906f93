package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// cmdInspect loads a trial output directory with the same checks the host
// applies and prints a short summary.
func cmdInspect(args []string) error {
	fs := flag.NewFlagSet("inspect", flag.ExitOnError)
	fs.Parse(args)
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: agentwork inspect TRIAL_DIR")
	}
	r, err := trial.Load(fs.Arg(0))
	if err != nil {
		return err
	}
	m := r.Manifest
	fmt.Printf("trial %s config %s ok=%v kernel %s swap %q cpu loops/ms %d\n", m.Spec.ID, m.Spec.Cell, m.OK, m.Kernel, m.Swap, m.CPULoopsPerMs)
	for _, e := range m.Errors {
		fmt.Printf("  error: %s\n", e)
	}
	for _, p := range m.Phases {
		fmt.Printf("  phase %-8s %v\n", p.Name, p.End.Sub(p.Start).Round(1e6))
	}
	for _, v := range m.Victims {
		h := r.Merged(v.Name)
		if h == nil || h.TotalCount() == 0 {
			fmt.Printf("  victim %s: no latencies (%s)\n", v.Name, v.Error)
			continue
		}
		fmt.Printf("  victim %-12s n=%-5d failed=%d p50 %dus p99 %dus p99.9 %dus max %dus\n", v.Name, h.TotalCount(), v.Failed,
			h.ValueAtQuantile(50), h.ValueAtQuantile(99), h.ValueAtQuantile(99.9), h.Max())
	}
	for _, n := range m.Neighbours {
		fmt.Printf("  neighbour %-10s ops=%d failed=%d exit=%d %s\n", n.Name, n.Count, n.Failed, n.ExitCode, n.Error)
	}
	for _, p := range m.Processes {
		fmt.Printf("  %s started=%v exit=%d sched_ext=%q %s\n", p.Name, p.Started, p.ExitCode, p.SchedExt, p.Error)
	}
	for _, cg := range m.Cgroups {
		ev, _ := cgroupfs.ParseFlatKeyed("memory.events", strings.NewReader(r.After.Cgroups[cg]["memory.events"]))
		cs, _ := cgroupfs.ParseFlatKeyed("cpu.stat", strings.NewReader(r.After.Cgroups[cg]["cpu.stat"]))
		fmt.Printf("  %-40s usage %6dms throttled %5dms high %d max %d oom_kill %d\n", cg, cs["usage_usec"]/1000, cs["throttled_usec"]/1000, ev["high"], ev["max"], ev["oom_kill"])
	}
	fmt.Printf("  timeline: %d samples\n", len(r.Timeline))
	return nil
}
