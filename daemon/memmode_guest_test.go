package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/agentcgroup/agentcgroup/bpf/mempressure"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/memhog"
	"github.com/agentcgroup/agentcgroup/harness/vmtest"
)

// ranInPatchedVM is ranInVM on the patched kernel (memcg_bpf_ops).
func ranInPatchedVM(t testing.TB) bool {
	return vmtest.Run(t, vmtest.Options{Kernel: "patched", CPUs: 2, MemMB: 1024, Timeout: 6 * time.Minute, KernelArgs: "no_timer_check"})
}

// Both steps touch 65 MiB under a 64 MiB memory.high; with the test binary's
// own memory that is a few MiB over, where the stock penalty reaches about
// 100 ms per event, so a pause counts from 300 ms on. A is so large that any
// overage asks for more than delay_max, so every throttle event of the
// background step sleeps delay_max (1 s); the tool_burst step's overage
// fits in its 16 MiB burst credit, so memcg_agent_ops adds no delay.
// Escalation is off so the daemon never freezes the steps being measured.
const fullModePolicy = `
[profiles.interactive]
[profiles.background]
[profiles.background.memory]
high = "64M"
max = "400M"
delay_a = "600s"
delay_k = 1
delay_max = "1s"
[profiles.background.escalation]
exempt = true
[profiles.tool_burst]
[profiles.tool_burst.memory]
high = "64M"
max = "400M"
burst_credit = "16M"
burst_duration = "2s"
delay_a = "600s"
delay_k = 1
delay_max = "1s"
[profiles.tool_burst.escalation]
exempt = true
`

// metricsText scrapes the daemon's /metrics.
func metricsText(t *testing.T, d *Daemon) string {
	t.Helper()
	resp, err := http.Get("http://" + d.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkModeReported asserts the mode in status, /metrics and the event log.
func checkModeReported(t *testing.T, e *env, d *Daemon, mode string) {
	t.Helper()
	if got := d.MemoryMode(); got != mode {
		t.Fatalf("memory mode %q, want %q", got, mode)
	}
	st, err := e.client().Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.MemoryMode != mode || st.MemoryModeReason == "" {
		t.Errorf("status memory_mode %q (%q), want %q with a reason", st.MemoryMode, st.MemoryModeReason, mode)
	}
	if (st.MemcgOps != nil) != (mode == ModeFull) {
		t.Errorf("status memcg_ops %+v in mode %s", st.MemcgOps, mode)
	}
	other := ModeMainline
	if mode == ModeMainline {
		other = ModeFull
	}
	m := metricsText(t, d)
	for _, want := range []string{`agentcgroup_memory_mode{mode="` + mode + `"} 1`, `agentcgroup_memory_mode{mode="` + other + `"} 0`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	found := false
	for _, ev := range e.events() {
		if ev.Kind == "config_loaded" && ev.MemoryMode == mode {
			found = true
		}
	}
	if !found {
		t.Errorf("no config_loaded event with memory_mode %q", mode)
	}
}

func mapID(t *testing.T, m *ebpf.Map) ebpf.MapID {
	t.Helper()
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := info.ID()
	if !ok {
		t.Fatal("map info without an id")
	}
	return id
}

// pausesOf waits for a "pauses" memhog to finish touching and returns the
// throttle pauses it printed.
func pausesOf(t *testing.T, out string, within time.Duration) []float64 {
	t.Helper()
	var text string
	waitFor(t, within, "the memhog to finish touching ("+out+")", func() bool {
		b, _ := os.ReadFile(out)
		text = string(b)
		return strings.Contains(text, "pauses-done")
	})
	var p []float64
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, "pause_ms "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("memhog line %q: %v", l, err)
			}
			p = append(p, f)
		}
	}
	return p
}

// startPauses runs the pauses memhog as a step; its output goes to a file.
func startPauses(t *testing.T, e *env, c *api.Client, tid, class string) (api.Step, string) {
	t.Helper()
	cmd, _ := memhog.Command("mode=pauses,total=65M,pause=300ms,hold=120s")
	out := filepath.Join(e.dir, tid+".out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	cmd.Stdout, cmd.Stderr = f, os.Stderr
	st := runStep(t, c, "s1", tid, class, cmd)
	t.Cleanup(func() { stopProc(t, cmd) })
	return st, out
}

// On a kernel with memcg_bpf_ops the daemon in auto mode attaches
// memcg_agent_ops on its pinned maps: a step over memory.high sleeps its
// profile's delay per throttle event, a step within its burst credit is not
// delayed (and memory.high is not raised by the daemon), the probe writes
// step_pressure with the measured time (the requested sleep included) while
// memcg_agent_ops keeps its requested delays in a map of its own, and a
// stopped daemon detaches so the next one attaches again.
func TestGuestFullModeVM(t *testing.T) {
	if ranInPatchedVM(t) {
		return
	}
	e := newEnv(t, fullModePolicy, "")
	d, stop := e.start()
	checkModeReported(t, e, d, ModeFull)
	if d.probe == nil {
		t.Fatalf("no probe in full mode: the scheduler's step_pressure would have no measured writer")
	}
	if shared, own := mapID(t, d.pressureMap), mapID(t, d.ops.PressureMap()); shared == own {
		t.Errorf("memcg_agent_ops writes the shared step_pressure map (id %d) beside the probe", shared)
	}
	c := e.client()
	if _, err := c.StartSession(api.SessionRequest{ID: "s1"}); err != nil {
		t.Fatal(err)
	}

	// Background: delayed delay_max per event.
	bg, out := startPauses(t, e, c, "bg", "background")
	pauses := pausesOf(t, out, 3*time.Minute)
	sp, ok, err := mempressure.Lookup(d.pressureMap, bg.CgroupID)
	if err != nil || !ok {
		t.Fatalf("no step_pressure entry for the background step (ok %v, err %v)", ok, err)
	}
	cs, ok, err := d.ops.Cgroup(bg.CgroupID)
	if err != nil || !ok {
		t.Fatalf("memcg_agent_ops has no state for the background step (ok %v, err %v)", ok, err)
	}
	stats, _ := d.ops.Stats()
	ev, _ := cgroupfs.Cgroup{Path: bg.Cgroup}.FlatKeyed("memory.events")
	var sum float64
	for _, p := range pauses {
		sum += p
	}
	t.Logf("background, delay_max 1s: %d pauses %v ms; step_pressure events %d delay %v; memcg_agent_ops delay events %d, last %d ms; memory.events high %d",
		len(pauses), pauses, sp.TotalEvents, time.Duration(sp.TotalDelayNs), cs.DelayEvents, cs.LastDelayMs, ev["high"])
	if len(pauses) < 3 {
		t.Fatalf("want at least 3 throttle pauses past memory.high, got %v", pauses)
	}
	mean := sum / float64(len(pauses))
	t.Logf("background: mean pause %.1f ms over %d events (configured 1000 ms)", mean, len(pauses))
	if math.Abs(mean-1000) > 50 {
		t.Errorf("mean throttle pause %.1f ms, want 1000 ms +-5%%", mean)
	}
	for _, p := range pauses {
		if p < 950 {
			t.Errorf("a throttle pause took %.1f ms, shorter than the configured 1000 ms -5%%", p)
		}
	}
	// The shared map is the probe's: it sees every trip through the
	// handler, the answered ones included, and times the requested sleeps.
	// memcg_agent_ops' own map counts exactly its answers.
	if sp.TotalEvents < cs.DelayEvents {
		t.Errorf("step_pressure counts %d events but memcg_agent_ops answered %d times: the probe missed handler trips", sp.TotalEvents, cs.DelayEvents)
	}
	if sp.TotalDelayNs < uint64(len(pauses))*uint64(950*time.Millisecond) {
		t.Errorf("step_pressure measured %v in the handler for %d pauses of 1s", time.Duration(sp.TotalDelayNs), len(pauses))
	}
	rp, ok, err := d.ops.Pressure(bg.CgroupID)
	if err != nil || !ok || rp.TotalEvents != cs.DelayEvents {
		t.Errorf("memcg_agent_ops' own pressure entry (ok %v, err %v) counts %d events, want its %d answers", ok, err, rp.TotalEvents, cs.DelayEvents)
	}
	if stats.DelayNonzero < uint64(len(pauses)) {
		t.Errorf("memcg_agent_ops answered with a delay %d times, fewer than the %d pauses", stats.DelayNonzero, len(pauses))
	}
	if sp.ThrashScore < 1000 {
		t.Errorf("thrash score %d after 1 s delays, want 1000", sp.ThrashScore)
	}

	// tool_burst: the overage fits the burst credit: no delay from
	// memcg_agent_ops, and the daemon leaves memory.high alone.
	before, _ := d.ops.Stats()
	tb, out := startPauses(t, e, c, "tb", "tool_burst")
	tcg := cgroupfs.Cgroup{Path: tb.Cgroup}
	pauses = pausesOf(t, out, 3*time.Minute)
	after, _ := d.ops.Stats()
	sp, ok, _ = mempressure.Lookup(d.pressureMap, tb.CgroupID)
	cs, _, _ = d.ops.Cgroup(tb.CgroupID)
	high, _ := tcg.ReadLimit("memory.high")
	ev, _ = tcg.FlatKeyed("memory.events")
	t.Logf("tool_burst within its 16M credit: %d pauses >= 300 ms %v; credit-forgiven calls %d; step_pressure events %d delay %v; memory.events high %d; memory.high %d",
		len(pauses), pauses, after.DelayCredit-before.DelayCredit, sp.TotalEvents, time.Duration(sp.TotalDelayNs), ev["high"], high)
	if len(pauses) != 0 {
		t.Errorf("a step within its burst credit was paused %v ms", pauses)
	}
	if ev["high"] == 0 || !ok || sp.TotalEvents == 0 || cs.DelayEvents == 0 {
		t.Errorf("the tool_burst step was never over memory.high (events high %d, pressure entry %v/%d, ops events %d): the test did not exercise the credit",
			ev["high"], ok, sp.TotalEvents, cs.DelayEvents)
	}
	if rp, _, _ := d.ops.Pressure(tb.CgroupID); rp.TotalDelayNs != 0 || cs.LastDelayMs != 0 {
		t.Errorf("memcg_agent_ops asked for %v within the burst credit", time.Duration(rp.TotalDelayNs))
	}
	if after.DelayCredit == before.DelayCredit {
		t.Errorf("no get_high_delay_ms call was forgiven by the burst credit")
	}
	if high != 64<<20 {
		t.Errorf("memory.high %d: in full mode the daemon must not raise it for burst credit", high)
	}

	// Shutdown detaches: a second daemon attaches memcg_agent_ops again
	// (only one memcg_bpf_ops can be attached at a time) and adopts the steps.
	stop()
	for _, ev := range e.events() {
		if ev.Kind == "memory_mode" && ev.Error != "" {
			t.Errorf("memory_mode event %q: %s", ev.Detail, ev.Error)
		}
	}
	d2, stop2 := e.start()
	checkModeReported(t, e, d2, ModeFull)
	st, err := e.client().Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Steps) != 2 {
		t.Errorf("the restarted daemon sees %d steps, want 2", len(st.Steps))
	}
	if err := c.EndSession("s1", true); err != nil {
		t.Errorf("end session: %v", err)
	}
	stop2()
}

// On the stock kernel auto picks mainline, and an explicit "full" is
// refused with an error naming the missing memcg_bpf_ops.
func TestGuestMainlineModeOnStock(t *testing.T) {
	if vmtest.Run(t, vmtest.Options{Kernel: "stock", CPUs: 2, MemMB: 1024, Timeout: 5 * time.Minute, KernelArgs: "no_timer_check"}) {
		return
	}
	e := newEnv(t, fullModePolicy, "")
	d, stop := e.start()
	checkModeReported(t, e, d, ModeMainline)
	if st, _ := e.client().Status(); !strings.Contains(st.MemoryModeReason, "no memcg_bpf_ops") {
		t.Errorf("memory_mode_reason %q does not say the kernel lacks memcg_bpf_ops", st.MemoryModeReason)
	}
	stop()

	for _, how := range []struct {
		name  string
		opts  Options
		extra string
	}{
		{"config", Options{}, `memory_mode = "full"`},
		{"flag", Options{MemoryMode: "full"}, ""},
	} {
		e := newEnv(t, fullModePolicy, how.extra)
		how.opts.ConfigPath = e.policy
		d, err := New(how.opts)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = d.Run(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "memcg_bpf_ops") || !strings.Contains(err.Error(), "mainline") {
			t.Errorf("%s: memory_mode full on the stock kernel: err %v, want one naming memcg_bpf_ops and the mainline fix", how.name, err)
		}
	}
	if _, err := New(Options{ConfigPath: e.policy, MemoryMode: "patched"}); err == nil || !strings.Contains(err.Error(), "not one of auto, mainline, full") {
		t.Errorf("bad memory mode flag: %v", err)
	}
}

// The installed binaries: agentcgroupd --memory-mode picks the mode on the
// patched kernel (full, or mainline to compare against), and agentcgroup
// status reports it as text and JSON.
func TestGuestDaemonBinaryMemoryModeVM(t *testing.T) {
	if ranInPatchedVM(t) {
		return
	}
	bin, err := exec.LookPath("agentcgroupd")
	if err != nil {
		t.Fatalf("agentcgroupd is not on the guest's PATH: %v", err)
	}
	cli, err := exec.LookPath("agentcgroup")
	if err != nil {
		t.Fatalf("agentcgroup is not on the guest's PATH: %v", err)
	}
	e := newEnv(t, fullModePolicy, "")
	for _, mode := range []string{ModeFull, ModeMainline, ModeFull} {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "--config", e.policy, "--memory-mode", mode)
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c := api.NewClient(e.sock)
		waitFor(t, 30*time.Second, "the daemon's socket", func() bool { _, err := c.Status(); return err == nil })
		out, err := exec.Command(cli, "--socket", e.sock, "status").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "memory_mode: "+mode+" (memory_mode = \""+mode+"\")") ||
			strings.Contains(string(out), "memcg_agent_ops:") != (mode == ModeFull) {
			t.Errorf("--memory-mode %s: agentcgroup status: %v\n%s", mode, err, out)
		}
		t.Logf("--memory-mode %s: %s", mode, strings.SplitN(string(out), "\n", 2)[0])
		out, err = exec.Command(cli, "--socket", e.sock, "status", "--json").Output()
		var js api.Status
		if err != nil || json.Unmarshal(out, &js) != nil || js.MemoryMode != mode {
			t.Errorf("--memory-mode %s: agentcgroup status --json: %v\n%s", mode, err, out)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("--memory-mode %s: daemon exit: %v; stderr:\n%s", mode, err, stderr.String())
		}
		if mode == ModeFull {
			evs := e.events()
			if last := evs[len(evs)-1]; last.Kind != "memory_mode" || last.Detail != "memcg_agent_ops detached" || last.Error != "" {
				t.Errorf("the daemon's last event on SIGTERM is %+v, want memcg_agent_ops detached", last)
			}
		}
	}
}
