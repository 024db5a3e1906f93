package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/kinds"
	"github.com/agentcgroup/agentcgroup/workloads/runner"
	"github.com/agentcgroup/agentcgroup/workloads/traces"
)

func durFlag(fs *flag.FlagSet, name string, def time.Duration, usage string) *trial.Duration {
	v := trial.Duration(def)
	fs.Var(&v, name, usage)
	return &v
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

type victimFlags struct {
	dur  *trial.Duration
	seed *uint64
	hlog *string
}

func addVictimFlags(fs *flag.FlagSet) victimFlags {
	return victimFlags{
		dur:  durFlag(fs, "duration", 5*time.Second, "measured time"),
		seed: fs.Uint64("seed", 1, "random seed"),
		hlog: fs.String("hlog", "", "write the HdrHistogram interval log here (default: a temporary file)"),
	}
}

func runStandaloneVictim(v trial.Victim, f victimFlags) error {
	ctx, cancel := signalContext()
	defer cancel()
	hlog := *f.hlog
	if hlog == "" {
		d, err := os.MkdirTemp("", "agentwork-")
		if err != nil {
			return err
		}
		hlog = filepath.Join(d, v.Name+trial.HistogramExt)
	}
	res := runner.RunVictim(ctx, runner.VictimRun{
		Victim: v, Seed: *f.seed, Ready: func() (time.Time, error) { return time.Now().Add(50 * time.Millisecond), nil }, Dur: f.dur.D(), Hlog: hlog,
	})
	return report(res, hlog)
}

// report prints the victim's result and percentiles from its log.
func report(res trial.WorkloadResult, hlog string) error {
	b, _ := json.MarshalIndent(res, "", "  ")
	fmt.Println(string(b))
	if res.Count > 0 {
		h, err := runner.MergeLog(hlog)
		if err != nil {
			return err
		}
		fmt.Printf("latency us: p50 %d  p90 %d  p99 %d  p99.9 %d  max %d  (n=%d, log %s)\n",
			h.ValueAtQuantile(50), h.ValueAtQuantile(90), h.ValueAtQuantile(99), h.ValueAtQuantile(99.9), h.Max(), h.TotalCount(), hlog)
	}
	if res.Error != "" {
		return fmt.Errorf("%s", res.Error)
	}
	return nil
}

func runStandaloneNeighbour(n trial.Neighbour, dur time.Duration, seed uint64) error {
	ctx, cancel := signalContext()
	defer cancel()
	if dur > 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeout(ctx, dur)
		defer c2()
	}
	res := runner.RunNeighbour(ctx, n, seed)
	b, _ := json.MarshalIndent(res, "", "  ")
	fmt.Println(string(b))
	if res.Error != "" {
		return fmt.Errorf("%s", res.Error)
	}
	return nil
}

func cmdTraces(args []string) error {
	for _, n := range traces.Names() {
		t, err := traces.Load(n)
		if err != nil {
			return err
		}
		var dur int64
		peak := 0.0
		for _, s := range t.Steps {
			dur += s.DurMs
			for _, m := range s.MemMB {
				peak = max(peak, m)
			}
		}
		fmt.Printf("%-40s %3d steps, %6.1f s in tools, peak +%.0f MB  (%s)\n", n, len(t.Steps), float64(dur)/1000, peak, t.Source)
	}
	return nil
}

// Every kind registered in workloads/kinds is a standalone command of its
// own name, with the flags the kind declares.
func init() {
	for _, k := range kinds.All() {
		if _, taken := commands[k.Name]; taken {
			panic("agentwork: kind " + k.Name + " shadows a command")
		}
		commands[k.Name] = command{summary: k.Summary, run: func(args []string) error { return cmdRegistered(k, args) }}
	}
}

// cmdRegistered runs a registered kind standalone. A kind taking both
// roles is told which by a first argument, victim (the default) or
// neighbour, since the roles take different flags.
func cmdRegistered(k *kinds.Kind, args []string) error {
	role := k.Roles()[0]
	if k.Victim && k.Neighbour && len(args) > 0 {
		switch trial.Role(args[0]) {
		case trial.RoleVictim, trial.RoleNeighbour:
			role, args = trial.Role(args[0]), args[1:]
		}
	}
	fs := flag.NewFlagSet(k.Name+" "+string(role), flag.ExitOnError)
	if role == trial.RoleVictim {
		vf := addVictimFlags(fs)
		build := k.Flags(fs, role)
		fs.Parse(args)
		v := trial.Victim{Name: k.Name, Kind: k.Name}
		if err := buildParams(k, build, fs.Args(), &v); err != nil {
			return err
		}
		return runStandaloneVictim(v, vf)
	}
	dur := durFlag(fs, "duration", 0, "run time (0: until SIGTERM/SIGINT)")
	seed := fs.Uint64("seed", 1, "random seed")
	build := k.Flags(fs, role)
	fs.Parse(args)
	n := trial.Neighbour{Name: k.Name, Kind: k.Name}
	if err := buildParams(k, build, fs.Args(), &n); err != nil {
		return err
	}
	return runStandaloneNeighbour(n, dur.D(), *seed)
}

// buildParams puts the parameters the flags make into w.
func buildParams(k *kinds.Kind, build func([]string) (any, error), args []string, w any) error {
	p, err := build(args)
	if err != nil {
		return err
	}
	return k.Put(w, p)
}
