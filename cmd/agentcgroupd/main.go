// Command agentcgroupd is the AgentCgroup node daemon: it owns the agent
// cgroup tree, loads the BPF parts, applies per-step policy and escalation,
// and serves the local API used by the agentcgroup client.
//
// --memory-mode auto|mainline|full overrides daemon.memory_mode: full runs
// memcg_agent_ops and needs a kernel with memcg_bpf_ops (the patched guest
// kernel); auto picks it when available.
//
// Without --config, and with no file at the default path
// (/etc/agentcgroup/policy.toml), it starts on the built-in policy
// (daemon/config/builtin.toml: one profile per class, monitor-only): steps
// get their cgroups, metrics and event log, and no cgroup knob is written.
// Putting a policy file at the default path and sending SIGHUP switches to
// it. A --config that names a missing file is an error.
//
// Signals: SIGHUP reloads the policy (an invalid file is refused and the old
// policy kept); SIGINT/SIGTERM stop the daemon and leave steps running, to
// be adopted by the next start.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentcgroup/agentcgroup/daemon"
	"github.com/agentcgroup/agentcgroup/daemon/config"
)

const defaultConfig = "/etc/agentcgroup/policy.toml"

// builtinPolicy returns the built-in policy when the daemon should run on
// it: --config not given and nothing at path. Any other problem with the
// file (permissions, syntax) is left for loading it to report.
func builtinPolicy(path string, explicit bool) *config.Config {
	if explicit {
		return nil
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return config.Builtin()
}

func main() {
	cfgPath := flag.String("config", defaultConfig, "policy file (TOML); see configs/policy.example.toml. Not given and absent: built-in profiles, monitor-only")
	check := flag.Bool("check", false, "validate the policy file and exit")
	memMode := flag.String("memory-mode", "", "override daemon.memory_mode: auto, mainline or full (full needs a kernel with memcg_bpf_ops)")
	cpuPolicy := flag.String("cpu-policy", "", "override daemon.cpu_policy: cgroup (scale cpu.weight), scheduler (a sched_ext scheduler reads step_policy) or off")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "agentcgroupd: unexpected arguments %q; only flags are accepted\n", flag.Args())
		os.Exit(2)
	}
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	builtin := builtinPolicy(*cfgPath, explicit)
	d, err := daemon.New(daemon.Options{ConfigPath: *cfgPath, MemoryMode: *memMode, CPUPolicy: *cpuPolicy, Scheduler: schedulerLoader, Config: builtin})
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentcgroupd: %v\n", err)
		os.Exit(1)
	}
	if *check {
		if builtin != nil {
			fmt.Printf("no policy file at %s; the built-in monitor-only policy is ok\n", *cfgPath)
			return
		}
		fmt.Printf("%s: ok\n", *cfgPath)
		return
	}
	if builtin != nil {
		fmt.Fprintf(os.Stderr, "agentcgroupd: no policy file at %s: running the built-in profiles (interactive, tool_burst, background) in monitor-only mode, changing no cgroup knob; to enforce, write a policy there (see configs/policy.example.toml, monitor_only = false) and send SIGHUP or restart\n", *cfgPath)
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
