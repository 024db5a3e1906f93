// Command scx_agent_flatcg attaches the AgentCgroup sched_ext scheduler,
// prints per-cgroup stats periodically and detaches on SIGINT/SIGTERM. If
// the kernel ends the scheduler (error, watchdog, sysrq) it prints the exit
// reason and exits non-zero; the system keeps running on the fair class.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/cilium/ebpf"

	"github.com/agentcgroup/agentcgroup/bpf/flatcg"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "scx_agent_flatcg:", err)
		os.Exit(1)
	}
}

// options is the command line: the scheduler's configuration, its maps
// not yet opened, and the loader's own settings.
type options struct {
	cfg               flatcg.Config
	interval          time.Duration
	pinned, statsFile string
}

// parseFlags reads and checks the command line without touching the
// kernel, so what a caller's flags set can be tested anywhere.
func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("scx_agent_flatcg", flag.ContinueOnError)
	var o options
	cfg := &o.cfg
	fs.BoolVar(&cfg.Partial, "partial", false, "only schedule SCHED_EXT tasks (SCX_OPS_SWITCH_PARTIAL)")
	fs.DurationVar(&cfg.Watchdog, "watchdog", 5*time.Second, "kernel stall watchdog timeout")
	fs.DurationVar(&cfg.Slice, "slice", 20*time.Millisecond, "default time slice")
	fs.DurationVar(&cfg.ShortSlice, "short-slice", time.Millisecond, "slice of a thrash-penalized cgroup")
	fs.DurationVar(&cfg.Boost, "boost", 5*time.Millisecond, "largest vtime boost of an interactive wakeup")
	thr := fs.Uint("thrash-threshold", uint(flatcg.DefaultThrashThreshold), "thrash_score at or above which the CPU penalty applies to a step whose step_policy sets no penalty_score (the pressure scale of bpf/include/agentcgroup.h)")
	pen := fs.Float64("thrash-penalty", 0.25, "weight factor of a penalized cgroup (0 < f <= 1)")
	fs.DurationVar(&cfg.MaxLead, "max-lead", 0, "how far a cgroup's vtime may lead the latest dispatched one; bounds every cgroup's wait for its turn (0: 250ms, at least the slice)")
	fs.DurationVar(&cfg.BandwidthTick, "bw-tick", 5*time.Millisecond, "cpu.max refill timer period")
	fs.DurationVar(&cfg.WakePreempt, "wake-preempt", time.Millisecond, "a wakeup preempts a CPU whose running cgroup leads the woken one by more than this cgroup vtime (negative: never)")
	fs.DurationVar(&o.interval, "interval", 2*time.Second, "stats period (0: no stats)")
	fs.StringVar(&o.pinned, "pinned-maps", "", "directory holding pinned step_policy and step_pressure maps to share (e.g. /sys/fs/bpf/agentcgroup)")
	fs.StringVar(&o.statsFile, "stats-file", "", "write a JSON report (map ids, counters, per-cgroup stats) here on SIGUSR1 and, if none was asked for, on exit")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() != 0 {
		return o, fmt.Errorf("unexpected arguments %q: all options are flags", fs.Args())
	}
	if *thr < 1 || *thr > uint(flatcg.ScoreMax) {
		return o, fmt.Errorf("-thrash-threshold %d: thrash_score ranges 1..%d", *thr, flatcg.ScoreMax)
	}
	if !(*pen > 0 && *pen <= 1) {
		return o, fmt.Errorf("-thrash-penalty %v: use a factor in (0, 1]", *pen)
	}
	cfg.ThrashThreshold = uint32(*thr)
	cfg.ThrashPenaltyQ8 = uint32(*pen*256 + 0.5)
	if cfg.ThrashPenaltyQ8 == 0 {
		cfg.ThrashPenaltyQ8 = 1
	}
	return o, nil
}

func run(args []string, out io.Writer) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	cfg, interval, pinned, statsFile := o.cfg, &o.interval, &o.pinned, &o.statsFile
	if *pinned != "" {
		if cfg.PolicyMap, err = ebpf.LoadPinnedMap(*pinned+"/step_policy", nil); err != nil {
			return fmt.Errorf("open pinned step_policy map in %s (is agentcgroupd running?): %w", *pinned, err)
		}
		if cfg.PressureMap, err = ebpf.LoadPinnedMap(*pinned+"/step_pressure", nil); err != nil {
			return fmt.Errorf("open pinned step_pressure map in %s (is agentcgroupd running?): %w", *pinned, err)
		}
	}

	s, err := flatcg.Load(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	mode := "full"
	if cfg.Partial {
		mode = "partial"
	}
	fmt.Fprintf(out, "scx_agent_flatcg attached (%s mode)\n", mode)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	reported := false
	report := func() {
		if *statsFile == "" {
			return
		}
		thr := cfg.ThrashThreshold
		if thr == 0 {
			thr = flatcg.DefaultThrashThreshold
		}
		r, err := s.Report(cfg.Partial, thr)
		if err == nil {
			err = fsutil.WriteJSON(*statsFile, r)
		}
		if err != nil {
			fmt.Fprintf(out, "scx_agent_flatcg: stats file: %v\n", err)
			return
		}
		reported = true
	}
	finalReport := func() {
		if !reported {
			report()
		}
	}
	// Wait sleeps until ops.exit reports; it has returned before s.Close
	// (deferred earlier, so run later) releases the maps it reads.
	exited := make(chan flatcg.ExitInfo, 1)
	waitCtx, cancelWait := context.WithCancel(ctx)
	waitDone := make(chan struct{})
	defer func() { cancelWait(); <-waitDone }()
	go func() {
		defer close(waitDone)
		if ei, err := s.Wait(waitCtx); err == nil {
			exited <- ei
		}
	}()

	var tick <-chan time.Time
	if *interval > 0 {
		t := time.NewTicker(*interval)
		defer t.Stop()
		tick = t.C
	}
	prev := map[uint64]flatcg.CgroupStats{}
	for {
		select {
		case <-usr1:
			report()
		case <-ctx.Done():
			finalReport()
			printCounters(out, s)
			fmt.Fprintln(out, "scx_agent_flatcg: detaching")
			return nil
		case ei := <-exited:
			finalReport()
			printCounters(out, s)
			if d, err := s.ExitDump(); err == nil && d != "" {
				fmt.Fprintf(out, "kernel debug dump at exit:\n%s\n", d)
			}
			return errors.New("scheduler ended by the kernel: " + ei.String())
		case <-tick:
			cur, err := s.Cgroups()
			if err != nil {
				return err
			}
			printStats(out, prev, cur, *interval)
			prev = cur
		}
	}
}

// printCounters writes the scheduler-wide event counts on one line.
func printCounters(out io.Writer, s *flatcg.Scheduler) {
	c, err := s.Counters()
	if err != nil {
		fmt.Fprintf(out, "scx_agent_flatcg: %v\n", err)
		return
	}
	fmt.Fprintf(out, "counters: wake_prev=%d wake_other=%d direct=%d sync=%d dispatched=%d kept=%d wake_preempt=%d charge_capped=%d (%v not charged) max_wait=%v (pid %d, cgroup %d) long_waits=%d acct_underflow=%d exit_active=%d lead_capped=%d aged=%d starved=%d\n",
		c.WakePrev, c.WakeOther, c.Direct, c.WakeSync, c.Dispatched, c.KeptPrev, c.WakePreempt,
		c.ChargeCapped, time.Duration(c.ChargeDroppedNs).Round(time.Millisecond),
		time.Duration(c.MaxWaitNs).Round(time.Millisecond), c.MaxWaitPid, c.MaxWaitCgroup, c.LongWaits, c.AcctUnderflows, c.ExitActive, c.LeadCapped, c.Aged, c.Starved)
}

func printStats(out io.Writer, prev, cur map[uint64]flatcg.CgroupStats, iv time.Duration) {
	ids := make([]uint64, 0, len(cur))
	for id, c := range cur {
		if c.Active || c.RuntimeNs != prev[id].RuntimeNs {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	fmt.Fprintf(out, "%-10s %5s %6s %7s %8s %7s %7s %10s\n",
		"cgroup", "lvl", "weight", "cpu%", "enq/s", "boosts", "penal", "throttled")
	for _, id := range ids {
		c, p := cur[id], prev[id]
		cpu := 100 * float64(c.RuntimeNs-p.RuntimeNs) / float64(iv.Nanoseconds())
		enq := float64(c.Enqueues-p.Enqueues) / iv.Seconds()
		fmt.Fprintf(out, "%-10d %5d %6d %7.1f %8.0f %7d %7d %10s\n",
			id, c.Level, c.Weight, cpu, enq, c.Boosts-p.Boosts, c.Penalties-p.Penalties,
			time.Duration(c.ThrottledNs-p.ThrottledNs).Round(time.Millisecond))
	}
}
