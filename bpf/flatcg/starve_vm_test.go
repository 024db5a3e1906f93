package flatcg

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/vmtest"
)

// A busy task with a small share of the machine must still run within a
// bounded time: here it sits in a cgroup of its own (a session's driver,
// outside any step) at cpu.weight 1 next to busy interactive steps (x4
// weight multiplier, boosted wakeups) while short-lived steps come and go.
// Its share is about 1/800 of its session; with a full slice per turn its
// cgroup vtime jumped so far ahead that the next turn came tens of
// seconds later and the kernel's watchdog ended the scheduler. In the
// agents evaluation the same happened to the session drivers at weight
// 100, whose share among seven sessions of steps is a few percent, once
// host steal inflated their charges. The starved task's longest wait is
// measured twice: from the scheduler's own enqueue-to-run record and from
// the kernel's run time in /proc/PID/schedstat.
func TestSmallShareTaskNotStarved(t *testing.T) {
	if vmtest.Run(t, vmOpts) {
		return
	}
	s := loadForTest(t, Config{})
	root := testTree(t, "fcg-starve")
	sess := mkCgroup(t, root, "session", 100, true)
	driver := mkCgroup(t, sess, "driver", 1, false)
	interactive := StepPolicy{
		Class: ClassInteractive, WeightMulQ8: 4 * 256, SliceNs: uint64(3 * time.Millisecond),
		CpuBurstCreditNs: uint64(50 * time.Millisecond), CpuRefillNsPerS: uint64(100 * time.Millisecond),
	}
	var steps []string
	for i := 0; i < 6; i++ {
		st := mkCgroup(t, sess, fmt.Sprintf("step-%d", i), 100, false)
		if err := s.SetPolicy(cgid(t, st), interactive); err != nil {
			t.Fatal(err)
		}
		startBurst(t, st, 0)
		steps = append(steps, st)
	}
	d := startSpinner(t, driver, 1)
	time.Sleep(500 * time.Millisecond)

	// churn: a new bursty step every 400 ms that lives 1.5 s
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	churned := 0
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			dir := filepath.Join(sess, fmt.Sprintf("churn-%d", i))
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Errorf("create step cgroup: %v", err)
				return
			}
			id, err := CgroupID(dir)
			if err == nil {
				err = s.SetPolicy(id, interactive)
			}
			if err != nil {
				t.Errorf("step policy: %v", err)
				return
			}
			cmd := startIn(t, dir, "burst", "FLATCG_DURATION_MS=1500")
			if err := cmd.Start(); err != nil {
				t.Errorf("start churn step: %v", err)
				return
			}
			churned++
			go func() { cmd.Wait(); removeTree(dir) }()
			select {
			case <-ctx.Done():
			case <-time.After(400 * time.Millisecond):
			}
		}
	}()

	const window = 10 * time.Second
	before := cpuUsage(t, driver)
	stepBefore := cpuUsage(t, steps[0])
	gap := maxRunGap(t, d.Process.Pid, window)
	driverCPU := cpuUsage(t, driver) - before
	stepCPU := cpuUsage(t, steps[0]) - stepBefore
	cancel()
	wg.Wait()

	if ei, done, err := s.Exited(); err != nil || done {
		logExitDump(t, s)
		t.Fatalf("scheduler ended (%v): %v", err, ei)
	}
	if state, _ := State(); state != "enabled" {
		t.Fatalf("sched_ext state %q, want enabled", state)
	}
	c, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	st := logStats(t, s, driver)[0]
	t.Logf("driver (weight 1) over %v: %v of CPU, longest wait %v by the scheduler's record, %v between runs by schedstat; a busy step got %v; %d steps churned",
		window, driverCPU, time.Duration(st.MaxWaitNs), gap, stepCPU, churned)
	t.Logf("counters: %+v", c)
	// MaxLead 250ms, the steps' summed effective share ~4, 2 CPUs: about
	// 0.5 s between turns, plus queueing behind the churn. Half the
	// watchdog leaves room for a loaded host and still catches a full
	// slice per turn (tens of seconds).
	const bound = 2500 * time.Millisecond
	if time.Duration(st.MaxWaitNs) > bound || gap > bound {
		t.Errorf("driver waited up to %v (scheduler) / %v (schedstat), want under %v", time.Duration(st.MaxWaitNs), gap, bound)
	}
	if driverCPU == 0 {
		t.Errorf("driver got no CPU in %v", window)
	}
	// Weighted fairness still favours the steps by far.
	if driverCPU*4 > stepCPU {
		t.Errorf("driver at weight 1 got %v, a step at weight 100 x4 only %v", driverCPU, stepCPU)
	}
}

// logExitDump logs this scheduler's lines of the kernel's debug dump (the
// cgroup state of each runnable task) and the tasks they belong to.
func logExitDump(t testing.TB, s *Scheduler) {
	d, err := s.ExitDump()
	if err != nil {
		t.Log(err)
		return
	}
	lines := strings.Split(d, "\n")
	for i, l := range lines {
		if strings.Contains(l, "fcg:") {
			if i > 0 {
				t.Log(strings.TrimSpace(lines[i-1]))
			}
			t.Log(strings.TrimSpace(l))
		}
	}
}

// startBurst runs a helper that computes ~8 ms and sleeps ~2 ms in turn,
// so every few ms it is a wakeup (boosted in an interactive step); with
// durationMs 0 it runs until killed.
func startBurst(t testing.TB, dir string, durationMs int) {
	t.Helper()
	cmd := startIn(t, dir, "burst", "FLATCG_DURATION_MS="+strconv.Itoa(durationMs))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start burst in %s: %v", dir, err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
}

// maxRunGap samples the run time (/proc/PID/task/*/schedstat, first
// field) of an always-runnable process every 50 ms for window and returns
// the longest stretch in which it did not grow.
func maxRunGap(t testing.TB, pid int, window time.Duration) time.Duration {
	t.Helper()
	read := func() uint64 {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
		var sum uint64
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			if v, err := strconv.ParseUint(strings.Fields(string(b))[0], 10, 64); err == nil {
				sum += v
			}
		}
		return sum
	}
	var gap time.Duration
	last, lastAt := read(), time.Now()
	for end := time.Now().Add(window); time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
		now := time.Now()
		if v := read(); v != last {
			last, lastAt = v, now
		} else if now.Sub(lastAt) > gap {
			gap = now.Sub(lastAt)
		}
	}
	return gap
}

// burst alternates ~8 ms of computation with a 2 ms sleep on one thread
// for FLATCG_DURATION_MS (0: forever).
func burst() {
	var deadline time.Time
	if d := envDuration("FLATCG_DURATION_MS"); d > 0 {
		deadline = time.Now().Add(d)
	}
	x := uint64(1)
	for deadline.IsZero() || time.Now().Before(deadline) {
		for start := time.Now(); time.Since(start) < 8*time.Millisecond; {
			for j := 0; j < 1<<10; j++ {
				x = x*6364136223846793005 + 1442695040888963407
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	if x == 0 {
		spinSink++
	}
	os.Exit(0)
}
