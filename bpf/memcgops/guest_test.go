package memcgops

// Guest-side bodies of the VM tests (vm_test.go boots the guests). They run
// as root in a fresh guest with cgroup2 at /sys/fs/cgroup and the memory
// controller enabled at the root.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/harness/vmtest"
)

const cgroupRoot = "/sys/fs/cgroup"

// mkCgroup creates a fresh cgroup (removed at cleanup) with the memory
// controller enabled on the way down to it.
func mkCgroup(t *testing.T, rel string) cgroupfs.Cgroup {
	t.Helper()
	if parent := filepath.Dir(rel); parent != "." {
		if err := cgroupfs.EnableControllers(cgroupRoot, parent, "memory"); err != nil {
			t.Fatal(err)
		}
	} else if err := cgroupfs.EnableControllers(cgroupRoot, "", "memory"); err != nil {
		t.Fatal(err)
	}
	cg, err := cgroupfs.Mkdir(filepath.Join(cgroupRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cg.RemoveAll(ctx, true)
	})
	return cg
}

func write(t *testing.T, cg cgroupfs.Cgroup, knob, v string) {
	t.Helper()
	if err := cg.Write(knob, v); err != nil {
		t.Fatal(err)
	}
}

func cgid(t *testing.T, cg cgroupfs.Cgroup) uint64 {
	t.Helper()
	id, err := cg.ID()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func memEvents(t *testing.T, cg cgroupfs.Cgroup) map[string]uint64 {
	t.Helper()
	m, err := cg.FlatKeyed("memory.events")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func readUint(t *testing.T, cg cgroupfs.Cgroup, knob string) uint64 {
	t.Helper()
	v, err := cg.ReadUint(knob)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// helper is a running copy of this test binary in helper mode.
type helper struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
}

func startHelper(t *testing.T, cg cgroupfs.Cgroup, kind string, env ...string) *helper {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: exec.Command(self)}
	h.cmd.Env = append(append(os.Environ(), "MAO_HELPER="+kind), env...)
	h.cmd.Stdout, h.cmd.Stderr = &h.stdout, &h.stderr
	if err := cg.Start(h.cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if h.cmd.ProcessState == nil {
			h.cmd.Process.Kill()
			h.cmd.Wait()
		}
	})
	return h
}

func (h *helper) wait(t *testing.T, v any) {
	t.Helper()
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper %v: %v\nstderr: %s", h.cmd.Env[len(h.cmd.Env)-1], err, h.stderr.String())
	}
	if v != nil {
		if err := json.Unmarshal(h.stdout.Bytes(), v); err != nil {
			t.Fatalf("helper output %q: %v", h.stdout.String(), err)
		}
	}
}

func loadAttached(t *testing.T, opts Options) *Ops {
	t.Helper()
	o, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	if err := o.Attach(); err != nil {
		t.Fatal(err)
	}
	return o
}

// delayPolicy makes get_high_delay_ms answer exactly maxMS for any overage:
// A is so large that A*(over/high) exceeds the maximum even one page over.
func delayPolicy(maxMS uint32) StepPolicy {
	return StepPolicy{Class: ClassBackground, MemDelayA_ms: 1 << 31, MemDelayK: 1, MemDelayMaxMs: maxMS}
}

// throttleRun touches 1 MiB past a 64 MiB memory.high with no swap, so the
// usage stays over high and each charge batch (256 KiB) is one throttle
// event. At that overage (1.6%) the stock penalty is about 15 ms.
func throttleRun(t *testing.T, name string, policy *StepPolicy, o *Ops) (touchReport, map[string]uint64) {
	t.Helper()
	cg := mkCgroup(t, name)
	write(t, cg, "memory.high", "64M")
	write(t, cg, "memory.swap.max", "0")
	if policy != nil {
		if err := o.SetPolicy(cgid(t, cg), *policy); err != nil {
			t.Fatal(err)
		}
	}
	h := startHelper(t, cg, "touch", "MAO_MB=65", "MAO_PAUSE_MS=100")
	var r touchReport
	h.wait(t, &r)
	return r, memEvents(t, cg)
}

func guestHighDelay(t *testing.T) {
	o := loadAttached(t, Options{})
	for _, want := range []uint32{2000, 1000} {
		pol := delayPolicy(want)
		before, _ := o.Stats()
		r, ev := throttleRun(t, fmt.Sprintf("mao-delay-%d", want), &pol, o)
		after, _ := o.Stats()
		t.Logf("configured %d ms: pauses %v ms (memory.events high %d, bpf delay calls %d)",
			want, r.PauseMS, ev["high"], after.DelayNonzero-before.DelayNonzero)
		if !r.Complete || len(r.PauseMS) < 3 {
			t.Fatalf("configured %d ms: want at least 3 throttle pauses over 1 MiB past high, got %+v", want, r)
		}
		// A pause of at least half the configured delay is one of the
		// policy's sleeps and must match it. The helper also sees any other
		// stall of 100 ms or more (a vCPU the host did not run, reclaim of
		// a fresh cgroup): one such short pause is logged, not counted.
		var sum float64
		var sleeps int
		var other []float64
		for _, p := range r.PauseMS {
			if p < float64(want)/2 {
				other = append(other, p)
				continue
			}
			sleeps++
			sum += p
			if math.Abs(p-float64(want)) > 0.05*float64(want) {
				t.Errorf("configured %d ms: a throttle pause took %.1f ms, outside +-5%%", want, p)
			}
		}
		t.Logf("configured %d ms: mean pause %.1f ms over %d sleeps; other stalls %v ms", want, sum/float64(max(sleeps, 1)), sleeps, other)
		if sleeps < 3 || len(other) > 1 {
			t.Errorf("configured %d ms: %d sleeps of the policy's length and %d shorter stalls %v, want at least 3 and at most 1", want, sleeps, len(other), other)
		}
		if after.DelayNonzero-before.DelayNonzero < uint64(sleeps) {
			t.Errorf("the policy answered %d times with a delay, fewer than the %d sleeps seen", after.DelayNonzero-before.DelayNonzero, sleeps)
		}
	}

	// Detached: the kernel is back to the stock penalty, far below 2 s at
	// this overage, while memory.high still throttles (events rise).
	if err := o.Detach(); err != nil {
		t.Fatal(err)
	}
	r, ev := throttleRun(t, "mao-delay-stock", nil, o)
	t.Logf("detached: %d pauses >= 100 ms %v, longest page touch %.1f ms, memory.events high %d", len(r.PauseMS), r.PauseMS, r.MaxMS, ev["high"])
	if !r.Complete || ev["high"] == 0 {
		t.Fatalf("detached run must complete with memory.high events, got %+v high=%d", r, ev["high"])
	}
	if r.MaxMS >= 500 {
		t.Fatalf("detached: a page touch took %.1f ms; the stock penalty at 1.6%% overage is ~15 ms", r.MaxMS)
	}
}

// guestBurstCredit: an overage inside the step's burst credit costs no BPF
// delay (the policy answers 0: no throttle sleep at all); the same overage
// without credit does.
func guestBurstCredit(t *testing.T) {
	o := loadAttached(t, Options{})
	pol := delayPolicy(1000)
	pol.MemBurstCreditBytes = 8 << 20
	before, _ := o.Stats()
	r, _ := throttleRun(t, "mao-credit", &pol, o)
	after, _ := o.Stats()
	t.Logf("with 8 MiB credit: pauses %v, longest touch %.1f ms, credit answers %d", r.PauseMS, r.MaxMS, after.DelayCredit-before.DelayCredit)
	if !r.Complete || r.MaxMS >= 500 {
		t.Fatalf("an overage inside the burst credit must not be delayed by the policy: %+v", r)
	}
	if after.DelayCredit == before.DelayCredit || after.DelayNonzero != before.DelayNonzero {
		t.Fatalf("stats: want credit answers and no delays, got %+v -> %+v", before, after)
	}
}

// pauseRun touches 2 MiB past a 64 MiB memory.high with no swap, so every
// charge batch past high is an over-high event, and reports every page
// touch of 10 ms or more: the stock penalty at this overage is 15-200 ms
// per event, and a touch that is not throttled takes microseconds unless
// it reclaims or the loaded host deschedules the emulated CPU. A throttle
// sleep is told from those by the time the task spent asleep in the touch.
func pauseRun(t *testing.T, name string, policy *StepPolicy, o *Ops) (touchReport, map[string]uint64) {
	t.Helper()
	cg := mkCgroup(t, name)
	write(t, cg, "memory.high", "64M")
	write(t, cg, "memory.swap.max", "0")
	if policy != nil {
		if err := o.SetPolicy(cgid(t, cg), *policy); err != nil {
			t.Fatal(err)
		}
	}
	h := startHelper(t, cg, "touch", "MAO_MB=66", "MAO_PAUSE_MS=10", "MAO_SYSTIME=1")
	var r touchReport
	h.wait(t, &r)
	return r, memEvents(t, cg)
}

// minThrottleSleepMS tells a throttle sleep from the short sleeps a page
// touch can make for other reasons. The stock kernel does not throttle for
// a penalty of HZ/100 jiffies or less, so its shortest throttle is a
// 3-jiffy timeout at HZ=250: over 8 ms asleep. The Go runtime's hand-off
// of a preempted locked thread and a reclaim that waits on a lock are off
// the CPU for well under a millisecond on an otherwise idle guest.
const minThrottleSleepMS = 5

// sleptPauses are the pauses of r during which the task was off the CPU
// for at least minThrottleSleepMS: throttle sleeps, as opposed to reclaim or the
// emulated CPU losing the host.
func sleptPauses(r touchReport) []float64 {
	var out []float64
	for i, p := range r.PauseMS {
		if i < len(r.PauseOffCPUMS) && r.PauseOffCPUMS[i] >= minThrottleSleepMS {
			out = append(out, p)
		}
	}
	return out
}

// guestCreditNoThrottle: the policy's delay replaces the stock penalty, so
// a step whose overage fits in its burst credit (the policy answers 0) is
// not throttled at all, where the same run on the same kernel is throttled
// by the stock penalty when the policy declines (a cgroup with no
// step_policy) and when nothing is attached.
func guestCreditNoThrottle(t *testing.T) {
	o := loadAttached(t, Options{})
	pol := delayPolicy(1000)
	pol.MemBurstCreditBytes = 8 << 20
	before, _ := o.Stats()
	credit, evCredit := pauseRun(t, "mao-nothrottle-credit", &pol, o)
	mid, _ := o.Stats()
	declined, evDeclined := pauseRun(t, "mao-nothrottle-declined", nil, o)
	after, _ := o.Stats()
	if err := o.Detach(); err != nil {
		t.Fatal(err)
	}
	stock, evStock := pauseRun(t, "mao-nothrottle-detached", nil, o)

	t.Logf("within credit: %d pauses >= 10 ms %v (ms off the CPU in each %v), longest touch %.2f ms, memory.events high %d, credit answers %d",
		len(credit.PauseMS), credit.PauseMS, credit.PauseOffCPUMS, credit.MaxMS, evCredit["high"], mid.DelayCredit-before.DelayCredit)
	t.Logf("policy declines (no step_policy): %d pauses >= 10 ms %v (ms off the CPU in each %v), longest touch %.2f ms, memory.events high %d, hook calls %d",
		len(declined.PauseMS), declined.PauseMS, declined.PauseOffCPUMS, declined.MaxMS, evDeclined["high"], after.DelayCalls-mid.DelayCalls)
	t.Logf("detached (stock): %d pauses >= 10 ms %v (ms off the CPU in each %v), longest touch %.2f ms, memory.events high %d",
		len(stock.PauseMS), stock.PauseMS, stock.PauseOffCPUMS, stock.MaxMS, evStock["high"])

	for name, r := range map[string]touchReport{"within credit": credit, "declined": declined, "detached": stock} {
		if !r.Complete {
			t.Fatalf("%s: the run did not complete: %+v", name, r)
		}
	}
	if evCredit["high"] == 0 || mid.DelayCredit == before.DelayCredit {
		t.Fatalf("within credit: the step must be over memory.high and the policy must answer from the credit (high events %d, credit answers %d)",
			evCredit["high"], mid.DelayCredit-before.DelayCredit)
	}
	if len(sleptPauses(stock)) == 0 {
		t.Fatalf("detached: the stock kernel did not throttle this run (no sleep of %d ms or more), so it shows nothing", minThrottleSleepMS)
	}
	if s := sleptPauses(credit); len(s) != 0 {
		t.Errorf("within credit: the task slept %d ms or more in %d page touches (%v); a 0 ms answer must mean no throttle sleep", minThrottleSleepMS, len(s), s)
	}
	if len(sleptPauses(declined)) == 0 {
		t.Errorf("declined: no sleep of %d ms or more; a cgroup the policy does not answer for must keep the stock penalty", minThrottleSleepMS)
	}
	if after.DelayNonzero != before.DelayNonzero {
		t.Errorf("the policy asked for a delay (%d times) in runs that should not", after.DelayNonzero-before.DelayNonzero)
	}
}

// delaySleepRun is one run of guestDelayIsSleep: the touch helper stops
// after 6 pauses and reports the system time of each.
func delaySleepRun(t *testing.T, name string, o *Ops, delayMS uint32, swap bool) touchReport {
	t.Helper()
	cg := mkCgroup(t, name)
	write(t, cg, "memory.high", "64M")
	if !swap {
		write(t, cg, "memory.swap.max", "0")
	}
	if err := o.SetPolicy(cgid(t, cg), delayPolicy(delayMS)); err != nil {
		t.Fatal(err)
	}
	h := startHelper(t, cg, "touch", "MAO_MB=96", "MAO_PAUSE_MS=100", "MAO_EVENTS=6", "MAO_SYSTIME=1")
	var r touchReport
	h.wait(t, &r)
	return r
}

// guestDelayIsSleep: a delay the policy asks for is a sleep of that length
// rather than reclaim retries: the task's system time during a 500 ms
// throttle pause stays under 5% of it. A pause's system time includes the
// one reclaim attempt before the sleep; the first throttle of a run also
// reclaims what the cgroup had that was reclaimable, so it is reported but
// held only to a looser bound. Without swap every charge batch past high
// is throttled. With zram swap, reclaim mostly keeps the step under high
// (the hook is not asked then; pauses shorter than the delay are reclaim
// in the charge path, reported only), and any throttle pause seen there
// is held to the same bound.
func guestDelayIsSleep(t *testing.T) {
	const delayMS = 500
	o := loadAttached(t, Options{})
	check := func(mode string, r touchReport, needSleeps int) {
		if len(r.PauseSysMS) != len(r.PauseMS) {
			t.Fatalf("%s: %d pauses but %d system times", mode, len(r.PauseMS), len(r.PauseSysMS))
		}
		var sleeps, sys, reclaim []float64
		for i, p := range r.PauseMS {
			if p >= 0.95*delayMS {
				sleeps, sys = append(sleeps, p), append(sys, r.PauseSysMS[i])
			} else {
				reclaim = append(reclaim, p, r.PauseSysMS[i])
			}
		}
		t.Logf("%s: throttle pauses %v ms with system time %v ms; shorter pauses (ms, system ms) %v", mode, sleeps, sys, reclaim)
		if len(sleeps) < needSleeps {
			t.Fatalf("%s: want at least %d throttle pauses of %d ms, got %+v", mode, needSleeps, delayMS, r)
		}
		for i, p := range sleeps {
			// The host's load stretches a pause by tens of ms at times.
			tol, sysMax := 0.20, 0.05
			if i == 0 {
				sysMax = 0.10
			}
			if p > (1+tol)*delayMS {
				t.Errorf("%s: throttle pause %d took %.1f ms, want %d ms +%.0f%%", mode, i, p, delayMS, 100*tol)
			}
			if sys[i] >= sysMax*delayMS {
				t.Errorf("%s: throttle pause %d: %.1f ms of system time during %.1f ms, want under %.0f ms: the pause is reclaim, not a sleep", mode, i, sys[i], p, sysMax*delayMS)
			}
		}
	}
	check("no swap", delaySleepRun(t, "mao-sleep-noswap", o, delayMS, false), 4)
	vmtest.ZramSwap(t, 128)
	check("zram swap", delaySleepRun(t, "mao-sleep-zram", o, delayMS, true), 0)
}

// protectResult is one run of the idle-then-active scenario.
type protectResult struct {
	Mode         string
	SwappedMiB   float64 // the interactive step's memory.swap.current after the hog
	MajorFaults  int64   // faults while re-touching its working set
	RetouchMS    float64
	LowEvents    uint64 // memory.events low of the interactive step
	BPFLowGrants uint64
}

// protectScenario: an agent tree limit/session/{interactive,background}
// with memory.max on the top. The interactive step builds a 24 MiB working
// set and goes idle; the background step then cycles 64 MiB twice through
// the 48 MiB limit; finally the interactive step touches its working set
// again.
func protectScenario(t *testing.T, mode string, setup func(top, session, inter cgroupfs.Cgroup)) protectResult {
	t.Helper()
	top := mkCgroup(t, "mao-prot-"+mode)
	write(t, top, "memory.max", "48M")
	session := mkCgroup(t, "mao-prot-"+mode+"/session")
	inter := mkCgroup(t, "mao-prot-"+mode+"/session/interactive")
	bg := mkCgroup(t, "mao-prot-"+mode+"/session/background")
	setup(top, session, inter)

	dir := t.TempDir()
	ready, goFile := filepath.Join(dir, "ready"), filepath.Join(dir, "go")
	ws := startHelper(t, inter, "workset", "MAO_MB=24", "MAO_READY="+ready, "MAO_GO="+goFile)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the interactive step never built its working set: %s", mode, ws.stderr.String())
		}
	}
	hog := startHelper(t, bg, "hog", "MAO_MB=64", "MAO_PASSES=2")
	hog.wait(t, nil)
	res := protectResult{Mode: mode, SwappedMiB: float64(readUint(t, inter, "memory.swap.current")) / (1 << 20)}
	if err := os.WriteFile(goFile, []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	var wr worksetReport
	ws.wait(t, &wr)
	if wr.CorruptPages != 0 {
		t.Fatalf("%s: %d pages of the working set came back corrupt", mode, wr.CorruptPages)
	}
	res.MajorFaults, res.RetouchMS = wr.MajorFaults, wr.RetouchMS
	res.LowEvents = memEvents(t, inter)["low"]
	return res
}

func guestProtection(t *testing.T) {
	vmtest.ZramSwap(t, 512)
	const ws = "24M"
	var results []protectResult
	results = append(results, protectScenario(t, "none", func(_, _, _ cgroupfs.Cgroup) {}))
	results = append(results, protectScenario(t, "static-step", func(_, _, inter cgroupfs.Cgroup) {
		write(t, inter, "memory.low", ws)
	}))
	results = append(results, protectScenario(t, "static-chain", func(_, session, inter cgroupfs.Cgroup) {
		write(t, session, "memory.low", ws)
		write(t, inter, "memory.low", ws)
	}))
	o := loadAttached(t, Options{})
	results = append(results, protectScenario(t, "bpf", func(_, _, inter cgroupfs.Cgroup) {
		if err := o.SetPolicy(cgid(t, inter), StepPolicy{Class: ClassInteractive, Flags: FlagProtectMem, MemProtectBudgetMs: 120000}); err != nil {
			t.Fatal(err)
		}
	}))
	st, _ := o.Stats()
	results[len(results)-1].BPFLowGrants = st.LowGrants

	report := map[string]protectResult{}
	for _, r := range results {
		t.Logf("%-12s swapped out %6.1f MiB, major faults on re-touch %6d, re-touch %7.1f ms, memory.events low %d, bpf grants %d",
			r.Mode, r.SwappedMiB, r.MajorFaults, r.RetouchMS, r.LowEvents, r.BPFLowGrants)
		report[r.Mode] = r
	}
	writeOut(t, "protection.json", results)
	none, bpf := report["none"], report["bpf"]
	if none.SwappedMiB < 8 {
		t.Fatalf("without protection the idle working set should lose pages to the background step (swapped %.1f MiB); the scenario is too weak", none.SwappedMiB)
	}
	if bpf.BPFLowGrants == 0 {
		t.Fatal("below_low never granted protection")
	}
	if bpf.SwappedMiB > none.SwappedMiB/4 {
		t.Fatalf("below_low kept too little: %.1f MiB swapped with protection vs %.1f MiB without", bpf.SwappedMiB, none.SwappedMiB)
	}
}

// writeOut saves a result file into the guest's /out when it exists.
func writeOut(t *testing.T, name string, v any) {
	if _, err := os.Stat("/out"); err != nil {
		return
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	if err := os.WriteFile(filepath.Join("/out", name), b, 0o644); err != nil {
		t.Error(err)
	}
}

// guestDetachWhileRunning detaches and re-attaches the ops while four
// steps are being throttled by them; every step must finish intact and the
// kernel must log no warning.
func guestDetachWhileRunning(t *testing.T) {
	logBefore := kernelLog(t)
	o := loadAttached(t, Options{})
	var hs []*helper
	for i := 0; i < 4; i++ {
		cg := mkCgroup(t, fmt.Sprintf("mao-detach-%d", i))
		write(t, cg, "memory.high", "16M")
		write(t, cg, "memory.swap.max", "0")
		pol := delayPolicy(300)
		if err := o.SetPolicy(cgid(t, cg), pol); err != nil {
			t.Fatal(err)
		}
		hs = append(hs, startHelper(t, cg, "touch", "MAO_MB=20", "MAO_PAUSE_MS=100"))
	}
	time.Sleep(2 * time.Second)
	for i := 0; i < 5; i++ {
		start := time.Now()
		if err := o.Detach(); err != nil {
			t.Fatal(err)
		}
		t.Logf("detach %d took %v", i, time.Since(start))
		// Detach is synchronous: attaching again at once must not find
		// the old ops still registered (EBUSY).
		if err := o.Attach(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err := o.Detach(); err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		var r touchReport
		h.wait(t, &r)
		if !r.Complete {
			t.Errorf("step %d did not finish its work: %+v", i, r)
		}
	}
	// Only lines logged during the test count.
	out := strings.TrimPrefix(kernelLog(t), logBefore)
	for _, bad := range []string{"BUG:", "WARNING:", "Oops", "RCU stall", "rcu_sched detected", "refcount_t"} {
		if strings.Contains(out, bad) {
			t.Fatalf("kernel log has %q:\n%s", bad, out)
		}
	}
}

func kernelLog(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("dmesg").CombinedOutput()
	if err != nil {
		t.Fatalf("dmesg: %v: %s", err, out)
	}
	return string(out)
}

// guestLifecycle: attach replays online for existing cgroups, a new cgroup
// gets state, a removed one loses it, and a second attach is refused.
func guestLifecycle(t *testing.T) {
	before := mkCgroup(t, "mao-life-before")
	o := loadAttached(t, Options{})
	if _, ok, err := o.Cgroup(cgid(t, before)); err != nil || !ok {
		t.Fatalf("a cgroup online before attach must be replayed into the state (ok=%v err=%v)", ok, err)
	}
	after := mkCgroup(t, "mao-life-after")
	id := cgid(t, after)
	if _, ok, _ := o.Cgroup(id); !ok {
		t.Fatal("handle_cgroup_online did not record a new cgroup")
	}
	if err := after.Remove(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, ok, _ := o.Cgroup(id); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("handle_cgroup_offline did not drop the removed cgroup's state")
		}
	}
	second, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := second.Attach(); err == nil {
		t.Fatal("a second memcg_bpf_ops attach must be refused while one is attached")
	} else {
		t.Logf("second attach refused as expected: %v", err)
	}
	st, _ := o.Stats()
	if st.Online == 0 || st.Offline == 0 {
		t.Fatalf("stats did not count online/offline: %+v", st)
	}
}

// guestMemcgBasics is the no-regression set, run unchanged on the stock
// kernel and on the patched kernel with nothing attached.
func guestMemcgBasics(t *testing.T) {
	t.Run("high-throttles", func(t *testing.T) {
		// The helper is this test binary: its runtime and, when they are
		// not in the page cache yet, its text pages are charged next to
		// what it touches. A 1 MiB run in an unlimited sibling measures that
		// footprint and leaves the text pages charged there.
		warm := mkCgroup(t, "basic-high-warm")
		startHelper(t, warm, "touch", "MAO_MB=1").wait(t, nil)
		footprint := readUint(t, warm, "memory.peak")
		cg := mkCgroup(t, "basic-high")
		write(t, cg, "memory.high", "32M")
		write(t, cg, "memory.swap.max", "0")
		var r touchReport
		startHelper(t, cg, "touch", "MAO_MB=40", "MAO_PAUSE_MS=100").wait(t, &r)
		ev := memEvents(t, cg)
		peak := readUint(t, cg, "memory.peak")
		t.Logf("40 MiB against a 32 MiB high: %d pauses, %.0f ms total, events %v, peak %d KiB, helper footprint %d KiB",
			len(r.PauseMS), r.TotalMS, ev, peak>>10, footprint>>10)
		if !r.Complete || ev["high"] == 0 || ev["max"] != 0 {
			t.Fatalf("memory.high must throttle without failing: %+v %v", r, ev)
		}
		// Without swap the touched pages cannot be reclaimed, so usage
		// reaches 40 MiB plus the helper's footprint; throttling must
		// keep it from running further than a few MiB beyond that.
		if bound := uint64(40<<20) + footprint + 4<<20; peak > bound {
			t.Fatalf("memory.peak %d KiB above %d KiB (40 MiB touched + %d KiB helper footprint + 4 MiB): usage ran far past high",
				peak>>10, bound>>10, footprint>>10)
		}
	})
	t.Run("max-oom-kills", func(t *testing.T) {
		cg := mkCgroup(t, "basic-max")
		write(t, cg, "memory.max", "32M")
		write(t, cg, "memory.swap.max", "0")
		h := startHelper(t, cg, "touch", "MAO_MB=64")
		err := h.cmd.Wait()
		ev := memEvents(t, cg)
		t.Logf("64 MiB against a 32 MiB max: %v, events %v", err, ev)
		if err == nil || ev["oom_kill"] == 0 {
			t.Fatalf("memory.max must OOM-kill the step: err=%v events=%v", err, ev)
		}
	})
	t.Run("low-protects", func(t *testing.T) {
		vmtest.ZramSwap(t, 512)
		none := protectScenario(t, "basic-none", func(_, _, _ cgroupfs.Cgroup) {})
		low := protectScenario(t, "basic-low", func(_, session, inter cgroupfs.Cgroup) {
			write(t, session, "memory.low", "24M")
			write(t, inter, "memory.low", "24M")
		})
		t.Logf("memory.low 24M top-down: swapped %.1f MiB vs %.1f MiB without", low.SwappedMiB, none.SwappedMiB)
		if none.SwappedMiB < 8 || low.SwappedMiB > none.SwappedMiB/2 {
			t.Fatalf("memory.low did not protect: %.1f MiB swapped with it, %.1f without", low.SwappedMiB, none.SwappedMiB)
		}
	})
}

// guestProtectionRevoked: protection stops when the step's budget is used
// up, and when an OOM kill happens next to it (its parent's oom_kill rises).
func guestProtectionRevoked(t *testing.T) {
	vmtest.ZramSwap(t, 512)
	o := loadAttached(t, Options{})
	run := func(t *testing.T, name string, budgetMS uint32, between func(session cgroupfs.Cgroup)) (CgroupState, float64) {
		top := mkCgroup(t, name)
		write(t, top, "memory.max", "48M")
		session := mkCgroup(t, name+"/session")
		inter := mkCgroup(t, name+"/session/interactive")
		bg := mkCgroup(t, name+"/session/background")
		id := cgid(t, inter)
		if err := o.SetPolicy(id, StepPolicy{Class: ClassInteractive, Flags: FlagProtectMem, MemProtectBudgetMs: budgetMS}); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		ready, goFile := filepath.Join(dir, "ready"), filepath.Join(dir, "go")
		ws := startHelper(t, inter, "workset", "MAO_MB=24", "MAO_READY="+ready, "MAO_GO="+goFile)
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat(ready); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("working set never built: %s", ws.stderr.String())
			}
		}
		startHelper(t, bg, "hog", "MAO_MB=64", "MAO_PASSES=2").wait(t, nil)
		between(session)
		startHelper(t, bg, "hog", "MAO_MB=64", "MAO_PASSES=2").wait(t, nil)
		swapped := float64(readUint(t, inter, "memory.swap.current")) / (1 << 20)
		os.WriteFile(goFile, []byte("1"), 0o644)
		ws.wait(t, &worksetReport{})
		st, ok, err := o.Cgroup(id)
		if err != nil || !ok {
			t.Fatalf("no state for the interactive step (ok=%v err=%v)", ok, err)
		}
		return st, swapped
	}
	t.Run("budget", func(t *testing.T) {
		st, swapped := run(t, "mao-rev-budget", 200, func(cgroupfs.Cgroup) {})
		t.Logf("200 ms budget: revoked=%d used=%v grants=%d, swapped %.1f MiB", st.Revoked, time.Duration(st.ProtectUsedNs), st.LowGrants, swapped)
		if st.Revoked != RevokedBudget || st.LowGrants == 0 || swapped < 4 {
			t.Fatalf("want protection granted, then revoked for budget and the working set reclaimed; got %+v, %.1f MiB swapped", st, swapped)
		}
	})
	t.Run("oom-next-door", func(t *testing.T) {
		st, swapped := run(t, "mao-rev-oom", 600000, func(session cgroupfs.Cgroup) {
			killer := mkCgroup(t, "mao-rev-oom/session/killer")
			write(t, killer, "memory.max", "8M")
			write(t, killer, "memory.swap.max", "0")
			if err := startHelper(t, killer, "touch", "MAO_MB=16").cmd.Wait(); err == nil {
				t.Fatal("the killer step was supposed to be OOM-killed")
			}
			t.Logf("session memory.events after the OOM kill: %v", memEvents(t, session))
		})
		t.Logf("after an OOM kill in the session: revoked=%d grants=%d, swapped %.1f MiB", st.Revoked, st.LowGrants, swapped)
		if st.Revoked != RevokedOOM || st.LowGrants == 0 {
			t.Fatalf("want protection revoked for OOM after being granted; got %+v", st)
		}
	})
	if s, _ := o.Stats(); s.RevokedBudget == 0 || s.RevokedOom == 0 {
		t.Fatalf("stats do not count the revocations: %+v", s)
	}
}
