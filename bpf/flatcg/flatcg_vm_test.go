package flatcg

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/agentcgroup/agentcgroup/harness/vmtest"
)

const measureWindow = 6 * time.Second

// Every test boots its own 2-CPU guest on the pinned stock kernel.
var vmOpts = vmtest.Options{CPUs: 2, MemMB: 1024, Kernel: "stock", Timeout: 3 * time.Minute}

// The scheduler must load on the pinned kernel, and every kfunc it imports
// must resolve to exactly one kernel function despite the cilium/ebpf
// lookup bug described in bpf/include/agc_bpf.h.
func TestLoadsOnPinnedKernel(t *testing.T) {
	if vmtest.Run(t, vmOpts) {
		return
	}
	spec, err := loadFlatcg()
	if err != nil {
		t.Fatal(err)
	}
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatalf("kernel BTF: %v", err)
	}
	var kfuncs []string
	for typ := range spec.Types.All() {
		if fn, ok := typ.(*btf.Func); ok && fn.Linkage == btf.ExternFunc {
			kfuncs = append(kfuncs, fn.Name)
		}
	}
	if len(kfuncs) < 10 {
		t.Fatalf("found only %d extern functions in the object: %v", len(kfuncs), kfuncs)
	}
	for _, name := range kfuncs {
		types, err := kernel.AnyTypesByName(name)
		if err != nil {
			t.Errorf("kfunc %s: %v", name, err)
			continue
		}
		n := 0
		for _, ty := range types {
			if _, ok := ty.(*btf.Func); ok {
				n++
			}
		}
		if n != 1 {
			t.Errorf("kfunc %s resolves to %d kernel functions (%v); cilium/ebpf cannot load it reliably", name, n, types)
		}
	}

	s := loadForTest(t, Config{})
	if st, _ := State(); st != "enabled" {
		t.Fatalf("sched_ext state %q after attach, want enabled", st)
	}
	ops, err := os.ReadFile("/sys/kernel/sched_ext/root/ops")
	if err != nil || strings.TrimSpace(string(ops)) != "agent_flatcg" {
		t.Fatalf("/sys/kernel/sched_ext/root/ops = %q (%v), want agent_flatcg", ops, err)
	}
	// the machine keeps working under us: run a process to completion
	if out, err := exec.Command(os.Args[0], "-test.run=^$").CombinedOutput(); err != nil {
		t.Fatalf("process under the scheduler: %v: %s", err, out)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st, _ := State(); st != "disabled" {
		t.Fatalf("sched_ext state %q after detach, want disabled", st)
	}
}

func TestWeights(t *testing.T) {
	if vmtest.Run(t, vmOpts) {
		return
	}
	s := loadForTest(t, Config{})
	root := testTree(t, "fcg-weights")
	a := mkCgroup(t, root, "a", 100, false)
	b := mkCgroup(t, root, "b", 300, false)
	startSpinner(t, a, 2)
	startSpinner(t, b, 2)
	time.Sleep(time.Second)
	total := measureUsage(t, 2*time.Second, a, b)
	sh := medianShares(t, 7, 1500*time.Millisecond, a, b)
	ratio := sh[1] / sh[0]
	t.Logf("cpu.weight 100 vs 300: median shares %.3f vs %.3f, ratio %.3f (want 3 +-10%%)", sh[0], sh[1], ratio)
	logStats(t, s, a, b)
	if !within(ratio, 3, 0.10) {
		t.Errorf("share ratio %.3f, want 3 within 10%%", ratio)
	}
	if sum := total[0] + total[1]; sum < 2*time.Second*17/10 {
		t.Errorf("busy cgroups got %v of %v on 2 CPUs: scheduler is not work conserving", sum, 4*time.Second)
	}
}

// A{a1:100, a2:300} at weight 100 vs B at weight 100: flattened shares are
// a1 1/8, a2 3/8, B 1/2.
func TestNestedWeights(t *testing.T) {
	if vmtest.Run(t, vmOpts) {
		return
	}
	s := loadForTest(t, Config{})
	root := testTree(t, "fcg-nested")
	a := mkCgroup(t, root, "A", 100, true)
	a1 := mkCgroup(t, a, "a1", 100, false)
	a2 := mkCgroup(t, a, "a2", 300, false)
	b := mkCgroup(t, root, "B", 100, false)
	for _, d := range []string{a1, a2, b} {
		startSpinner(t, d, 2)
	}
	time.Sleep(time.Second)
	sh := medianShares(t, 7, 1500*time.Millisecond, a1, a2, b)
	want := []float64{0.125, 0.375, 0.5}
	t.Logf("median shares a1 %.3f a2 %.3f B %.3f (want %v)", sh[0], sh[1], sh[2], want)
	logStats(t, s, a1, a2, b)
	for i, name := range []string{"a1", "a2", "B"} {
		if !within(sh[i], want[i], 0.10) {
			t.Errorf("%s share %.3f, want %.3f within 10%%", name, sh[i], want[i])
		}
	}
}

func TestCPUMax(t *testing.T) {
	if vmtest.Run(t, vmOpts) {
		return
	}
	s := loadForTest(t, Config{})
	root := testTree(t, "fcg-cpumax")
	c := mkCgroup(t, root, "capped", 0, false)
	writeFile(t, filepath.Join(c, "cpu.max"), "50000 100000")
	startSpinner(t, c, 2)
	time.Sleep(time.Second)
	u := measureUsage(t, measureWindow, c)
	cpus := float64(u[0]) / float64(measureWindow)
	t.Logf("cpu.max 50000 100000 with 2 spinning threads: %.3f CPUs (want 0.5 +-10%%)", cpus)
	st := logStats(t, s, c)[0]
	if !within(cpus, 0.5, 0.10) {
		t.Errorf("capped cgroup used %.3f CPUs, want 0.5 within 10%%", cpus)
	}
	if st.Throttles == 0 || st.ThrottledNs == 0 {
		t.Errorf("scheduler recorded no throttling (%+v)", st.Stats)
	}

	// lifting the cap releases the cgroup
	writeFile(t, filepath.Join(c, "cpu.max"), "max 100000")
	time.Sleep(500 * time.Millisecond)
	u = measureUsage(t, 2*time.Second, c)
	if cpus := float64(u[0]) / float64(2*time.Second); cpus < 1.5 {
		t.Errorf("after cpu.max max the cgroup used %.3f CPUs, want about 2", cpus)
	}
}

func TestThrashPenaltyCutsShare(t *testing.T) {
	if vmtest.Run(t, vmOpts) {
		return
	}
	s := loadForTest(t, Config{})
	root := testTree(t, "fcg-thrash")
	x := mkCgroup(t, root, "x", 100, false)
	y := mkCgroup(t, root, "y", 100, false)
	startSpinner(t, x, 2)
	startSpinner(t, y, 2)
	time.Sleep(time.Second)
	before := medianShares(t, 5, time.Second, x, y)

	// the memory side keeps the score fresh; stale entries count as zero
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			s.SetPressure(cgid(t, x), StepPressure{ThrashScore: 800, LastUpdateNs: MonotonicNow()})
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	during := medianShares(t, 5, time.Second, x, y)
	cancel()
	wg.Wait()
	st := logStats(t, s, x)[0]
	t.Logf("x share before %.3f, with thrash_score 800 %.3f (0.25x weight predicts 0.2)", before[0], during[0])
	if during[0] > 0.35 || during[0] > before[0]*0.75 {
		t.Errorf("thrash penalty did not cut x's share enough: %.3f -> %.3f", before[0], during[0])
	}
	if st.Penalties == 0 {
		t.Errorf("scheduler recorded no penalties")
	}
	// x ran about 0.2 of 2 CPUs for 5.5 s while penalized
	if st.PenalizedNs < uint64(500*time.Millisecond) || st.PenalizedNs > st.RuntimeNs {
		t.Errorf("penalized_ns %v of runtime %v: want the CPU time x ran while penalized", time.Duration(st.PenalizedNs), time.Duration(st.RuntimeNs))
	}

	// once the score goes stale the penalty stops
	time.Sleep(time.Second)
	stale := logStats(t, s, x)[0]
	after := medianShares(t, 5, time.Second, x, y)
	t.Logf("x share after the score went stale %.3f", after[0])
	if after[0] < 0.35 {
		t.Errorf("stale pressure still penalizes x: share %.3f", after[0])
	}
	if st2 := logStats(t, s, x)[0]; st2.PenalizedNs != stale.PenalizedNs {
		t.Errorf("penalized_ns grew from %v to %v with the score stale", time.Duration(stale.PenalizedNs), time.Duration(st2.PenalizedNs))
	}
}

// A step's policy carries its own penalty threshold: with the same fresh
// score, below the scheduler's default, only the step whose policy sets a
// lower penalty_score is penalized. The policy lookups that found an entry
// are counted, which is how a report shows the scheduler reads the map
// the policy writer fills.
func TestPenaltyScoreFromPolicy(t *testing.T) {
	if vmtest.Run(t, vmOpts) {
		return
	}
	s := loadForTest(t, Config{})
	root := testTree(t, "fcg-penscore")
	x := mkCgroup(t, root, "x", 100, false)
	y := mkCgroup(t, root, "y", 100, false)
	startSpinner(t, x, 2)
	startSpinner(t, y, 2)
	c0, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c0.PolicyLookups == 0 || c0.PolicyHits != 0 {
		t.Fatalf("counters before any policy: %+v (want lookups, no hits)", c0)
	}
	score := DefaultThrashThreshold / 2
	if err := s.SetPolicy(cgid(t, y), StepPolicy{PenaltyScore: score}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			for _, d := range []string{x, y} {
				s.SetPressure(cgid(t, d), StepPressure{ThrashScore: score, LastUpdateNs: MonotonicNow()})
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	during := medianShares(t, 5, time.Second, x, y)
	cancel()
	wg.Wait()
	st := logStats(t, s, x, y)
	c1, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("score %d on both, y's penalty_score %d, default %d: shares x %.3f y %.3f; penalized ns x %v y %v; policy hits %d of %d lookups",
		score, score, DefaultThrashThreshold, during[0], during[1], time.Duration(st[0].PenalizedNs), time.Duration(st[1].PenalizedNs),
		c1.PolicyHits, c1.PolicyLookups)
	if st[0].PenalizedNs != 0 || st[0].Penalties != 0 {
		t.Errorf("x (no policy, score below the default threshold) was penalized: %+v", st[0].Stats)
	}
	if st[1].PenalizedNs == 0 || during[1] > 0.35 {
		t.Errorf("y (penalty_score %d, score %d) was not penalized: share %.3f, %+v", score, score, during[1], st[1].Stats)
	}
	if c1.PolicyHits == 0 || c1.PolicyHits > c1.PolicyLookups {
		t.Errorf("policy hits %d of %d lookups: y's entry was never found", c1.PolicyHits, c1.PolicyLookups)
	}
}

func TestInteractiveWakeupLatency(t *testing.T) {
	if vmtest.Run(t, vmOpts) {
		return
	}
	s := loadForTest(t, Config{})
	root := testTree(t, "fcg-latency")
	bg := mkCgroup(t, root, "noise", 100, false)
	inter := mkCgroup(t, root, "interactive", 100, false)
	back := mkCgroup(t, root, "background", 100, false)
	if err := s.SetPolicy(cgid(t, inter), StepPolicy{
		Class: ClassInteractive, CpuBurstCreditNs: uint64(200 * time.Millisecond),
		CpuRefillNsPerS: uint64(500 * time.Millisecond),
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPolicy(cgid(t, back), StepPolicy{Class: ClassBackground}); err != nil {
		t.Fatal(err)
	}
	startSpinner(t, bg, 3) // 3 busy threads on 2 CPUs: no idle CPU to wake on
	time.Sleep(time.Second)

	var li, lb []int64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); li = runSleeper(t, inter, 5*time.Millisecond, 300) }()
	go func() { defer wg.Done(); lb = runSleeper(t, back, 5*time.Millisecond, 300) }()
	wg.Wait()
	st := logStats(t, s, inter, back)
	pi50, pi90 := percentile(li, 0.5), percentile(li, 0.9)
	pb50, pb90 := percentile(lb, 0.5), percentile(lb, 0.9)
	t.Logf("wakeup latency under contention: interactive p50 %v p90 %v; background p50 %v p90 %v", pi50, pi90, pb50, pb90)
	if st[0].Boosts == 0 {
		t.Errorf("interactive step got no boosts")
	}
	if pi50 >= pb50 || pi90 >= pb90 {
		t.Errorf("interactive wakeups (p50 %v, p90 %v) not faster than background (p50 %v, p90 %v)", pi50, pi90, pb50, pb90)
	}
}

func TestPartialModeLeavesOthersOnFair(t *testing.T) {
	if vmtest.Run(t, vmOpts) {
		return
	}
	s := loadForTest(t, Config{Partial: true})
	root := testTree(t, "fcg-partial")
	out := mkCgroup(t, root, "outside", 0, false)
	in := mkCgroup(t, root, "agent", 0, false)
	o := startSpinner(t, out, 1)
	a := startSpinner(t, in, 1)
	// Every thread: the spinning happens on a goroutine's thread, and the
	// main thread alone may not run at all in the second below.
	if err := SetSchedExtProcess(a.Process.Pid); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	for _, c := range []struct {
		pid  int
		want int
	}{{o.Process.Pid, 0}, {a.Process.Pid, SchedExt}, {os.Getpid(), 0}} {
		pol, err := TaskPolicy(c.pid)
		if err != nil {
			t.Fatal(err)
		}
		if pol != c.want {
			t.Errorf("pid %d policy %d, want %d", c.pid, pol, c.want)
		}
	}
	st := logStats(t, s, out, in)
	if st[0].RuntimeNs != 0 {
		t.Errorf("partial mode scheduled the outside cgroup (%v runtime)", time.Duration(st[0].RuntimeNs))
	}
	if st[1].RuntimeNs == 0 {
		t.Errorf("partial mode did not schedule the SCHED_EXT task")
	}
}

func TestErrorExitIsReported(t *testing.T) {
	if vmtest.Run(t, vmOpts) {
		return
	}
	s := loadForTest(t, Config{})
	if err := s.TriggerTestError(42); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ei, err := s.Wait(ctx)
	if err != nil {
		t.Fatalf("no exit reported: %v", err)
	}
	t.Logf("exit: %v", ei)
	if ei.Kind < 1024 {
		t.Errorf("exit kind %d (%s), want an error kind (>= 1024)", ei.Kind, ei.KindName())
	}
	if ei.Reason == "" || !strings.Contains(ei.Message, "test-triggered error (code 42)") {
		t.Errorf("exit reason %q message %q lack the triggered error", ei.Reason, ei.Message)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := State()
		if st == "disabled" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sched_ext state still %q after the error", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out, err := exec.Command(os.Args[0], "-test.run=^$").CombinedOutput(); err != nil {
		t.Fatalf("system not usable after the scheduler error: %v: %s", err, out)
	}
	if err := s.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		t.Logf("close after error: %v", err)
	}
}

func logStats(t testing.TB, s *Scheduler, dirs ...string) []CgroupStats {
	t.Helper()
	out := make([]CgroupStats, len(dirs))
	for i, d := range dirs {
		st, err := s.CgroupStatsOf(cgid(t, d))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: runtime %v enqueues %d boosts %d penalties %d (penalized %v) throttled %v (%d times)",
			filepath.Base(d), time.Duration(st.RuntimeNs), st.Enqueues, st.Boosts, st.Penalties,
			time.Duration(st.PenalizedNs), time.Duration(st.ThrottledNs), st.Throttles)
		out[i] = st
	}
	return out
}

// A plain (no policy) sleeper whose cgroup is far behind a CPU hog must not
// wait for the hog's whole slice: the wakeup preempts. Same workload with
// wakeup preemption off for comparison.
func TestWakeupPreemptsCgroupFarAhead(t *testing.T) {
	if vmtest.Run(t, vmOpts) {
		return
	}
	measure := func(cfg Config) (p50, p90 time.Duration, preempts uint64) {
		s := loadForTest(t, cfg)
		root := testTree(t, "fcg-wakepreempt")
		hog := mkCgroup(t, root, "hog", 100, false)
		victim := mkCgroup(t, root, "victim", 100, false)
		sp := startSpinner(t, hog, 2) // both CPUs busy: no idle CPU to wake on
		time.Sleep(500 * time.Millisecond)
		lat := runSleeper(t, victim, 5*time.Millisecond, 200)
		c, err := s.Counters()
		if err != nil {
			t.Fatal(err)
		}
		sp.Process.Kill()
		sp.Wait()
		removeTree(root)
		if err := s.Close(); err != nil {
			t.Fatalf("detach: %v", err)
		}
		waitDisabled(t)
		return percentile(lat, 0.5), percentile(lat, 0.9), c.WakePreempt
	}
	on50, on90, n := measure(Config{})
	off50, off90, _ := measure(Config{WakePreempt: -1})
	t.Logf("sleeper vs 2 spinners: wakeup preemption on p50 %v p90 %v (%d preempting wakeups); off p50 %v p90 %v",
		on50, on90, n, off50, off90)
	if n == 0 {
		t.Errorf("no wakeup preempted the spinner's CPU")
	}
	if on50 >= off50 {
		t.Errorf("wakeup preemption did not cut p50 wakeup latency: %v with, %v without", on50, off50)
	}
}

// A pipe handoff inside one cgroup runs the wakee right behind its waker on
// the waker's CPU (no IPI to an idle CPU). A waker that computed for 2 ms
// first is a producer, not a handoff: its wakeups are not placed that way.
func TestSyncHandoffStaysOnWakerCPU(t *testing.T) {
	if vmtest.Run(t, vmOpts) {
		return
	}
	s := loadForTest(t, Config{})
	root := testTree(t, "fcg-sync")
	dir := mkCgroup(t, root, "pair", 100, false)
	syncs := func() uint64 {
		c, err := s.Counters()
		if err != nil {
			t.Fatal(err)
		}
		return c.WakeSync
	}
	before := syncs()
	trips := runCount(t, dir, "pingpong", "FLATCG_DURATION_MS=1000")
	handoff := syncs() - before
	before = syncs()
	busyTrips := runCount(t, dir, "pingpong", "FLATCG_DURATION_MS=1000", "FLATCG_BUSY_US=2000")
	producer := syncs() - before
	t.Logf("handoff: %d round trips, %d of %d wakeups queued behind the waker; producer: %d round trips, %d of %d",
		trips, handoff, 2*trips, busyTrips, producer, 2*busyTrips)
	if trips == 0 || busyTrips == 0 {
		t.Fatal("no round trips")
	}
	if handoff == 0 {
		t.Error("no pipe handoff was queued behind its waker")
	}
	// Only the replies (the echoing thread wakes the producer at once) may
	// be placed behind the waker; the producer's own pings never are.
	if producer > busyTrips+busyTrips/10+2 {
		t.Errorf("%d sync placements for %d producer round trips: the producer's pings were placed behind it", producer, busyTrips)
	}
}

func waitDisabled(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := State()
		if err != nil {
			t.Fatal(err)
		}
		if st == "disabled" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sched_ext still %q 5s after detach", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
