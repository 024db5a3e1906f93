// Package pressuretest measures the thrash_score distribution that memory
// workloads produce, for the guest tests and benchmarks of the pressure
// writers (the mainline probe in bpf/mempressure, memcg_agent_ops in
// bpf/memcgops). docs/PRESSURE.md records its results and the thresholds
// chosen from them.
//
// The test binary doubles as the workload: its TestMain calls MaybeRun,
// and Measure re-executes the binary inside the step's cgroup.
//
// Workload specs (comma-separated key=value):
//
//	kind=blowup  target=N rate=N dur=D [retouch=0]
//	                                      map and touch 1 MiB chunks at rate
//	                                      bytes/s up to target, then re-touch
//	                                      everything (or, with retouch=0,
//	                                      sleep) for dur (the memory_blowup
//	                                      neighbour; the fill takes as long
//	                                      as the guest needs)
//	kind=workset size=N idle=D touch=N period=D dur=D
//	                                      touch a size working set, sleep
//	                                      idle, then every period touch the
//	                                      next touch bytes of it, for dur
//	                                      (an interactive step)
//
// Both print "measure <ns>" when the measured phase starts and "done <ns>"
// at its end (CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns).
package pressuretest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/internal/units"
	"golang.org/x/sys/unix"
)

// EnvVar carries the workload spec to the re-executed test binary.
const EnvVar = "AGC_PRESSURE_WORKLOAD"

// SampleEvery is how often Measure reads the step's pressure entry.
const SampleEvery = 10 * time.Millisecond

const mib = 1 << 20

// Case is one workload in its own step cgroup.
type Case struct {
	Name string
	High int64  // memory.high, bytes
	Max  int64  // memory.max, bytes; 0 leaves it unlimited
	Work string // workload spec
}

// Cases are the shapes the shipped scenarios produce, sized like
// scenarios/memory.toml (a 128 MiB memory.high for neighbours, a 20 ms
// interactive period touching 2 MiB): a memory_blowup neighbour at 1.25x
// and at 2x its memory.high; a step that overshoots its memory.high once
// by 10% and stops growing (a tool's peak); and a small idle-then-active
// working set that fits under its memory.high (the interactive victim)
// and one that does not. blowup rate: the scenarios ask for 96 MiB/s;
// under TCG page faulting caps it near 40 MB/s anyway.
func Cases() []Case {
	return []Case{
		{Name: "blowup-1.25x", High: 128 * mib, Max: 320 * mib,
			Work: "kind=blowup,target=160M,rate=96M,dur=8s"},
		{Name: "blowup-2x", High: 128 * mib, Max: 320 * mib,
			Work: "kind=blowup,target=256M,rate=96M,dur=8s"},
		{Name: "overshoot-1.1x", High: 128 * mib, Max: 320 * mib,
			Work: "kind=blowup,target=141M,rate=96M,dur=3s,retouch=0"},
		{Name: "workset-fits", High: 32 * mib, Max: 192 * mib,
			Work: "kind=workset,size=24M,idle=3s,touch=2M,period=20ms,dur=6s"},
		{Name: "workset-over", High: 32 * mib, Max: 192 * mib,
			Work: "kind=workset,size=40M,idle=3s,touch=2M,period=20ms,dur=8s"},
	}
}

// MaybeRun runs the workload named by EnvVar and exits; without EnvVar it
// returns at once. Call it first in TestMain.
func MaybeRun() {
	spec := os.Getenv(EnvVar)
	if spec == "" {
		return
	}
	if err := run(spec); err != nil {
		fmt.Fprintln(os.Stderr, "pressuretest workload:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

// Mono is CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns.
func Mono() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

func mono() uint64 { return Mono() }

func run(spec string) error {
	kv := map[string]string{}
	for _, f := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("spec field %q: want key=value", f)
		}
		kv[k] = v
	}
	size := func(k string) (int64, error) { return parseSize(kv[k]) }
	dur := func(k string) (time.Duration, error) {
		d, err := units.ParseDuration(kv[k])
		return d.D(), err
	}
	switch kv["kind"] {
	case "blowup":
		target, err := size("target")
		if err != nil {
			return err
		}
		rate, err := size("rate")
		if err != nil {
			return err
		}
		d, err := dur("dur")
		if err != nil {
			return err
		}
		return blowup(target, rate, d, kv["retouch"] != "0")
	case "workset":
		n, err := size("size")
		if err != nil {
			return err
		}
		touch, err := size("touch")
		if err != nil {
			return err
		}
		idle, err := dur("idle")
		if err != nil {
			return err
		}
		period, err := dur("period")
		if err != nil {
			return err
		}
		d, err := dur("dur")
		if err != nil {
			return err
		}
		return workset(n, idle, touch, period, d)
	}
	return fmt.Errorf("unknown kind %q", kv["kind"])
}

// parseSize reads a size as internal/units does; "max" is no amount to
// map.
func parseSize(s string) (int64, error) {
	b, err := units.ParseBytes(s)
	if err == nil && b == units.Max {
		err = fmt.Errorf(`size "max": want an amount, e.g. "64M"`)
	}
	return int64(b), err
}

func mapAnon(n int64) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("mmap %d bytes: %w", n, err)
	}
	return b, nil
}

// touch writes a word every 512 bytes of b[off:off+n], varying with the
// offset and pass, so no page is zero or same-filled (zram would store
// those for free) and every page is dirtied again.
func touch(b []byte, off, n int64, pass uint64) {
	size := int64(len(b))
	for done := int64(0); done < n; done += 512 {
		p := (off + done) % size
		v := uint64(p)*0x9e3779b97f4a7c15 + pass | 1
		b[p] = byte(v)
		b[p+1] = byte(v >> 8)
		b[p+2] = byte(v >> 16)
		b[p+3] = byte(v >> 24)
	}
}

func blowup(target, rate int64, d time.Duration, retouch bool) error {
	start := time.Now()
	fmt.Printf("measure %d\n", mono())
	var chunks [][]byte
	for mapped := int64(0); mapped < target; mapped += mib {
		if rate > 0 {
			due := start.Add(time.Duration(float64(mapped) / float64(rate) * float64(time.Second)))
			time.Sleep(time.Until(due))
		}
		c, err := mapAnon(mib)
		if err != nil {
			return err
		}
		touch(c, 0, mib, 1)
		chunks = append(chunks, c)
	}
	filled := time.Now()
	fmt.Printf("filled %d\n", mono())
	if !retouch {
		time.Sleep(d)
	}
	for pass := uint64(2); retouch && time.Since(filled) < d; pass++ {
		for _, c := range chunks {
			if time.Since(filled) >= d {
				break
			}
			touch(c, 0, mib, pass)
		}
	}
	fmt.Printf("done %d\n", mono())
	return nil
}

func workset(n int64, idle time.Duration, step int64, period, d time.Duration) error {
	b, err := mapAnon(n)
	if err != nil {
		return err
	}
	touch(b, 0, n, 1)
	fmt.Printf("ready %d\n", mono())
	time.Sleep(idle)
	fmt.Printf("measure %d\n", mono())
	start := time.Now()
	var off int64
	for i := 0; time.Since(start) < d; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * period)))
		touch(b, off, step, uint64(i)+2)
		off = (off + step) % n
	}
	fmt.Printf("done %d\n", mono())
	return nil
}

// Sample is one reading of a step's pressure entry.
type Sample struct {
	Mono  uint64
	Score uint32 // as the daemon reads it: 0 when stale, unless a task is still in the handler
	Sched uint32 // as the scheduler reads it: 0 when stale

	Events, DelayNs uint64 // the entry's totals
}

// Result summarizes one case's measured phase. Percentiles are over the
// samples with a non-zero (fresh) score, i.e. of the score a reader polling
// at a random moment of pressure sees.
type Result struct {
	Case       string
	Mode       string // "mainline" (probe) or "full" (memcg_agent_ops)
	Samples    int
	Fresh      float64 // share of samples with a fresh score (daemon view)
	SchedFresh float64 // the same in the scheduler's view
	P50, P90   uint32
	P99, Max   uint32
	// EarlyP50 and EarlyP90 are over the fresh samples of the first
	// second after the first event (what a daemon acting within
	// freeze_after of the onset sees).
	EarlyP50, EarlyP90 uint32
	// AtLeast[i] is the share of fresh samples with a score of at least
	// Thresholds[i].
	AtLeast []float64
	Peak    uint64 // memory.peak of the step, bytes
	// ProbeEvents and ProbeMeanDelay: the probe's count and measured mean
	// delay, where it runs beside another writer (full mode).
	ProbeEvents    uint64
	ProbeMeanDelay time.Duration
	Events         uint64        // throttle events in the measured phase
	MeanDelay      time.Duration // mean per-event delay the writer recorded
	HighEvents     uint64        // memory.events high growth
	Duration       time.Duration // measured phase
	AllSamples     []Sample      `json:"-"`
	FreshScores    []uint32      `json:"-"`
}

// Thresholds are the candidate levels Result.AtLeast reports on.
var Thresholds = []uint32{10, 20, 30, 50, 100, 300}

// Percentile of sorted v (nearest rank), 0 for an empty slice.
func Percentile(sorted []uint32, p float64) uint32 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Reading is one look at a step's pressure entry.
type Reading struct {
	Score   uint32 // what the daemon acts on (0 when stale, unless still throttling)
	Sched   uint32 // what the scheduler acts on (0 when stale)
	Events  uint64 // total_events
	DelayNs uint64 // total_delay_ns
	// The probe's totals where it runs beside another writer (full
	// mode), else 0.
	ProbeEvents, ProbeDelayNs uint64
}

// Env is where Measure runs a case.
type Env struct {
	Mode string
	// Parent is the cgroup directory the step cgroups are made in (with
	// the memory controller enabled for its children).
	Parent string
	// Register makes the writer under test track the step.
	Register func(cgid uint64) error
	// ScoreUnit is the delay one score point stands for (the scale's
	// AGC_PRESSURE_UNIT_NS, from the caller's generated bindings).
	ScoreUnit time.Duration
	// Read looks at the step's pressure entry at time now (Mono);
	// ok is false while it has none.
	Read func(cgid, now uint64) (r Reading, ok bool)
}

// Measure runs c in a fresh step cgroup under env.Parent and samples its
// pressure entry every SampleEvery.
func Measure(tb testing.TB, env Env, c Case) Result {
	tb.Helper()
	cg, err := cgroupfs.Mkdir(filepath.Join(env.Parent, c.Name))
	if err != nil {
		tb.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cg.RemoveAll(ctx, true)
	}()
	if err := cg.WriteLimit("memory.high", uint64(c.High)); err != nil {
		tb.Fatal(err)
	}
	if c.Max > 0 {
		if err := cg.WriteLimit("memory.max", uint64(c.Max)); err != nil {
			tb.Fatal(err)
		}
	}
	id, err := cg.ID()
	if err != nil {
		tb.Fatal(err)
	}
	if err := env.Register(id); err != nil {
		tb.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), EnvVar+"="+c.Work)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cg.Start(cmd); err != nil {
		tb.Fatal(err)
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var samples []Sample
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(SampleEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			now := Mono()
			rd, _ := env.Read(id, now)
			samples = append(samples, Sample{Mono: now, Score: rd.Score, Sched: rd.Sched, Events: rd.Events, DelayNs: rd.DelayNs})
		}
	}()

	var from, to uint64
	var before Reading
	var highBefore uint64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "measure":
			from = v
			before, _ = env.Read(id, v)
			ev, _ := cg.FlatKeyed("memory.events")
			highBefore = ev["high"]
		case "done":
			to = v
		}
	}
	werr := cmd.Wait()
	stop()
	wg.Wait()
	if werr != nil {
		// memory.max may OOM-kill a blow-up; its samples up to then count.
		var ee *exec.ExitError
		if !errors.As(werr, &ee) {
			tb.Fatalf("%s: %v", c.Name, werr)
		}
		tb.Logf("%s: workload ended with %v", c.Name, werr)
	}
	if from == 0 {
		tb.Fatalf("%s: the workload never started its measured phase", c.Name)
	}
	if to == 0 {
		to = Mono()
	}
	after, _ := env.Read(id, to)
	ev, _ := cg.FlatKeyed("memory.events")
	peak, _ := cg.ReadUint("memory.peak")

	r := Result{Case: c.Name, Mode: env.Mode, Duration: time.Duration(to - from),
		Events: after.Events - before.Events, HighEvents: ev["high"] - highBefore, Peak: peak}
	if r.Events > 0 {
		r.MeanDelay = time.Duration((after.DelayNs - before.DelayNs) / r.Events)
	}
	if r.ProbeEvents = after.ProbeEvents - before.ProbeEvents; r.ProbeEvents > 0 {
		r.ProbeMeanDelay = time.Duration((after.ProbeDelayNs - before.ProbeDelayNs) / r.ProbeEvents)
	}
	var fresh, schedFresh int
	var onset uint64
	var early []uint32
	for _, s := range samples {
		if s.Mono < from || s.Mono > to {
			continue
		}
		r.AllSamples = append(r.AllSamples, s)
		if s.Score > 0 {
			fresh++
			r.FreshScores = append(r.FreshScores, s.Score)
			if onset == 0 {
				onset = s.Mono
			}
			if s.Mono-onset <= uint64(time.Second) {
				early = append(early, s.Score)
			}
		}
		if s.Sched > 0 {
			schedFresh++
		}
	}
	slices.Sort(early)
	r.EarlyP50, r.EarlyP90 = Percentile(early, 50), Percentile(early, 90)
	for _, t := range Thresholds {
		n := 0
		for _, v := range r.FreshScores {
			if v >= t {
				n++
			}
		}
		if fresh == 0 {
			r.AtLeast = append(r.AtLeast, 0)
		} else {
			r.AtLeast = append(r.AtLeast, float64(n)/float64(fresh))
		}
	}
	r.Samples = len(r.AllSamples)
	if r.Samples > 0 {
		r.Fresh = float64(fresh) / float64(r.Samples)
		r.SchedFresh = float64(schedFresh) / float64(r.Samples)
	}
	sorted := slices.Clone(r.FreshScores)
	slices.Sort(sorted)
	r.P50, r.P90, r.P99 = Percentile(sorted, 50), Percentile(sorted, 90), Percentile(sorted, 99)
	if len(sorted) > 0 {
		r.Max = sorted[len(sorted)-1]
	}
	return r
}

// TableHeader and Row format results as the markdown table docs/PRESSURE.md
// carries. Scores are in agc_pressure units (100 us of delay EWMA).
func TableHeader() string {
	h := "| mode | case | s | peak/high | fresh (daemon / sched) | p50 | p90 | p99 | max | first 1 s p50 / p90 | events | mean delay ms | probe events, mean ms | memory.events high |"
	sep := "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	for _, t := range Thresholds {
		h += fmt.Sprintf(" >= %d |", t)
		sep += "---|"
	}
	return h + "\n" + sep
}

// Row is one result as a line of the table (high is the case's memory.high).
func (r Result) Row(high int64) string {
	probe := "-"
	if r.ProbeEvents > 0 {
		probe = fmt.Sprintf("%d, %.1f", r.ProbeEvents, float64(r.ProbeMeanDelay)/1e6)
	}
	row := fmt.Sprintf("| %s | %s | %.1f | %.2f | %.0f%% / %.0f%% | %d | %d | %d | %d | %d / %d | %d | %.1f | %s | %d |",
		r.Mode, r.Case, r.Duration.Seconds(), float64(r.Peak)/float64(high), 100*r.Fresh, 100*r.SchedFresh,
		r.P50, r.P90, r.P99, r.Max, r.EarlyP50, r.EarlyP90, r.Events, float64(r.MeanDelay)/1e6, probe, r.HighEvents)
	for _, v := range r.AtLeast {
		row += fmt.Sprintf(" %.0f%% |", 100*v)
	}
	return row
}

// EnableSwap sets up a zram swap device of mb MiB, as the memory scenario
// does, so reclaim has somewhere to put anonymous pages and a step over
// memory.high is throttled rather than stuck. zram drops zero pages, so
// the workloads write non-zero data.
func EnableSwap(tb testing.TB, mb int) {
	tb.Helper()
	if b, _ := os.ReadFile("/proc/swaps"); strings.Contains(string(b), "zram0") {
		return
	}
	if _, err := os.Stat("/sys/block/zram0"); err != nil {
		if out, err := exec.Command("modprobe", "zram").CombinedOutput(); err != nil {
			tb.Fatalf("no zram device and modprobe zram failed: %v: %s", err, out)
		}
	}
	if err := os.WriteFile("/sys/block/zram0/disksize", []byte(fmt.Sprintf("%dM", mb)), 0o644); err != nil {
		tb.Fatal(err)
	}
	for _, c := range [][]string{{"mkswap", "/dev/zram0"}, {"swapon", "/dev/zram0"}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			tb.Fatalf("%v: %v: %s", c, err, out)
		}
	}
}
