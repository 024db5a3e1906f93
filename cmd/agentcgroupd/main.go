// Command agentcgroupd is the AgentCgroup node daemon: it owns the agent
// cgroup tree, loads the BPF parts, applies per-step policy and escalation,
// and serves the local API used by the agentcgroup client.
//
// --memory-mode auto|mainline|full overrides daemon.memory_mode: full runs
// memcg_agent_ops and needs a kernel with memcg_bpf_ops (the patched guest
// kernel); auto picks it when available.
//
// Signals: SIGHUP reloads the policy (an invalid file is refused and the old
// policy kept); SIGINT/SIGTERM stop the daemon and leave steps running, to
// be adopted by the next start.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentcgroup/agentcgroup/daemon"
)

func main() {
	cfgPath := flag.String("config", "/etc/agentcgroup/policy.toml", "policy file (TOML); see configs/policy.example.toml")
	check := flag.Bool("check", false, "validate the policy file and exit")
	memMode := flag.String("memory-mode", "", "override daemon.memory_mode: auto, mainline or full (full needs a kernel with memcg_bpf_ops)")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "agentcgroupd: unexpected arguments %q; only flags are accepted\n", flag.Args())
		os.Exit(2)
	}
	d, err := daemon.New(daemon.Options{ConfigPath: *cfgPath, MemoryMode: *memMode, Scheduler: schedulerLoader})
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentcgroupd: %v\n", err)
		os.Exit(1)
	}
	if *check {
		fmt.Printf("%s: ok\n", *cfgPath)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if err := d.Reload(); err != nil {
				fmt.Fprintf(os.Stderr, "agentcgroupd: reload refused, keeping the previous policy: %v\n", err)
			}
		}
	}()
	if err := d.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "agentcgroupd: %v\n", err)
		os.Exit(1)
	}
}
