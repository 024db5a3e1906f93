package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/memhog"
)

// reactionSample is one memory.high breach and when each path noticed it,
// all on CLOCK_MONOTONIC.
type reactionSample struct {
	T0       uint64 `json:"t0_ns"`     // workload starts the over-high allocation
	Breach   uint64 `json:"breach_ns"` // estimated crossing: t0 + margin at the prefill's fault rate
	Onset    uint64 `json:"onset_ns"`  // probe: first throttle of the episode (in kernel)
	Daemon   uint64 `json:"daemon_ns"` // daemon: RUNNING -> THROTTLED logged
	Cause    string `json:"cause"`     // the input that crossed the threshold
	Woken    string `json:"woken_by"`  // what woke the daemon: probe onset, memory.events, psi trigger, tick
	WokenAt  uint64 `json:"woken_ns"`  // when that signal reached the daemon
	NsPerMiB uint64 `json:"ns_per_mib"`
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(p/100*float64(len(s)-1) + 0.5)
	return s[i]
}

// BenchmarkReactionTime measures, per breach of memory.high, the time to
// the in-kernel pressure map update (probe) and to the daemon's first action
// (user space). Figures are milliseconds; p50/p99 over the samples. Under
// TCG every kernel path is several times slower than on hardware.
func BenchmarkReactionTime(b *testing.B) {
	if ranInVM(b) {
		return
	}
	const samples = 40
	const margin = 3 << 20 // prefill stops this far below memory.high
	b.StopTimer()
	dir := b.TempDir()
	policy := fmt.Sprintf(`[daemon]
socket = %q
state_dir = %q
event_log = %q
pin_dir = "/sys/fs/bpf/agc-bench"
metrics_addr = ""
tick = "20ms"
[profiles.interactive]
[profiles.tool_burst]
[profiles.tool_burst.memory]
high = "16M"
max = "256M"
[profiles.tool_burst.escalation]
throttle_score = 1
clear_after = "200ms"
`, dir+"/d.sock", dir+"/state", dir+"/events.jsonl")
	pf := dir + "/policy.toml"
	os.WriteFile(pf, []byte(policy), 0o644)
	d, err := New(Options{ConfigPath: pf})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-d.Ready()
	c := api.NewClient(dir + "/d.sock")
	if _, err := c.StartSession(api.SessionRequest{ID: "bench"}); err != nil {
		b.Fatal(err)
	}
	var out []reactionSample
	discarded := 0
	for i := 0; len(out) < samples && i < 2*samples; i++ {
		s, err := oneReaction(c, dir+"/events.jsonl", fmt.Sprintf("r%d", i), margin)
		if err == errEarlyBreach {
			// The Go runtime's own growth pushed the prefill over
			// memory.high: there is no clean breach time to measure from.
			discarded++
			continue
		}
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, s)
	}
	if len(out) < samples {
		b.Fatalf("only %d clean samples (%d discarded for breaching during the prefill)", len(out), discarded)
	}
	var kern, user, lag, kernT0, userT0, signal, decide []float64
	causes, woken := map[string]int{}, map[string]int{}
	ms := func(a, b uint64) float64 { return float64(int64(a-b)) / 1e6 }
	for _, s := range out {
		causes[s.Cause]++
		woken[s.Woken]++
		userT0 = append(userT0, ms(s.Daemon, s.T0))
		user = append(user, ms(s.Daemon, s.Breach))
		decide = append(decide, ms(s.Daemon, s.WokenAt))
		if s.Onset != 0 && s.Woken == "probe onset" {
			signal = append(signal, ms(s.WokenAt, s.Onset))
		}
		if s.Onset != 0 {
			kernT0 = append(kernT0, ms(s.Onset, s.T0))
			kern = append(kern, ms(s.Onset, s.Breach))
			lag = append(lag, ms(s.Daemon, s.Onset))
		}
	}
	b.ReportMetric(pct(kern, 50), "kernel-p50-ms")
	b.ReportMetric(pct(kern, 99), "kernel-p99-ms")
	b.ReportMetric(pct(user, 50), "daemon-p50-ms")
	b.ReportMetric(pct(user, 99), "daemon-p99-ms")
	b.ReportMetric(pct(lag, 50), "daemon-after-kernel-p50-ms")
	b.ReportMetric(pct(lag, 99), "daemon-after-kernel-p99-ms")
	summary := map[string]any{
		"samples": out, "causes": causes, "woken_by": woken, "discarded_prefill_breach": discarded,
		"from_estimated_breach_ms": map[string]any{
			"kernel_p50": pct(kern, 50), "kernel_p99": pct(kern, 99),
			"daemon_p50": pct(user, 50), "daemon_p99": pct(user, 99)},
		"from_t0_ms": map[string]any{
			"kernel_p50": pct(kernT0, 50), "kernel_p99": pct(kernT0, 99),
			"daemon_p50": pct(userT0, 50), "daemon_p99": pct(userT0, 99)},
		"daemon_after_kernel_ms": map[string]any{"p50": pct(lag, 50), "p99": pct(lag, 99)},
		"ringbuf_to_daemon_ms":   map[string]any{"p50": pct(signal, 50), "p99": pct(signal, 99), "n": len(signal)},
		"wakeup_to_decision_ms":  map[string]any{"p50": pct(decide, 50), "p99": pct(decide, 99)},
	}
	js, _ := json.MarshalIndent(summary, "", " ")
	fmt.Printf("reaction n=%d discarded=%d | from estimated breach: kernel p50 %.2f p99 %.2f ms, daemon p50 %.2f p99 %.2f ms | from t0: kernel p50 %.2f p99 %.2f, daemon p50 %.2f p99 %.2f | daemon after kernel p50 %.2f p99 %.2f ms (ring buffer to daemon p50 %.2f p99 %.2f, wakeup to decision p50 %.2f p99 %.2f) | woken_by %v | causes %v\n",
		len(out), discarded, pct(kern, 50), pct(kern, 99), pct(user, 50), pct(user, 99),
		pct(kernT0, 50), pct(kernT0, 99), pct(userT0, 50), pct(userT0, 99), pct(lag, 50), pct(lag, 99), pct(signal, 50), pct(signal, 99), pct(decide, 50), pct(decide, 99), woken, causes)
	if err := os.MkdirAll("/out", 0o755); err == nil {
		os.WriteFile("/out/reaction.json", js, 0o644)
	}
	// Every breach must have been seen by the probe; a few transitions
	// without an onset are reported, more is a failure.
	if missing := len(out) - len(kern); missing > len(out)/10 {
		b.Fatalf("the probe saw only %d of %d breaches", len(kern), len(out))
	} else if missing > 0 {
		fmt.Printf("reaction: %d of %d transitions carried no kernel onset\n", missing, len(out))
	}
}

var errEarlyBreach = errors.New("memory.high crossed before t0")

// oneReaction runs one breach in a fresh step and collects its timestamps.
func oneReaction(c *api.Client, logPath, tid string, margin int) (reactionSample, error) {
	var s reactionSample
	cmd, err := memhog.Command(fmt.Sprintf("mode=burst,prefill=edge-%dK,burst=8M,hold=0s", margin>>10))
	if err != nil {
		return s, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return s, err
	}
	st, err := c.CreateStep(api.StepRequest{Session: "bench", Step: tid, Class: "tool_burst"})
	if err != nil {
		return s, err
	}
	cg := cgroupfs.Cgroup{Path: st.Cgroup}
	if err := cg.Start(cmd); err != nil {
		return s, err
	}
	// Stop reading at t0: the next line comes only after the whole burst,
	// which a throttled step may take tens of seconds to finish.
	sc := bufio.NewScanner(out)
	for s.T0 == 0 && sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 {
			v, _ := strconv.ParseUint(f[1], 10, 64)
			switch f[0] {
			case "t0":
				s.T0 = v
			case "ns_per_mib":
				s.NsPerMiB = v
			}
		}
	}
	if s.T0 == 0 {
		cmd.Wait()
		return s, fmt.Errorf("step %s: workload printed no t0", tid)
	}
	s.Breach = s.T0 + s.NsPerMiB*uint64(margin)/(1<<20)
	deadline := time.Now().Add(30 * time.Second)
	for s.Daemon == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		f, err := os.Open(logPath)
		if err != nil {
			return s, err
		}
		ls := bufio.NewScanner(f)
		for ls.Scan() {
			var ev struct {
				Kind, Step, From, To, Cause, Detail string
				MonoNS                              uint64 `json:"mono_ns"`
				Onset                               uint64 `json:"onset_mono_ns"`
				Woken                               uint64 `json:"woken_mono_ns"`
			}
			if json.Unmarshal(ls.Bytes(), &ev) == nil && ev.Step == tid && ev.From == "RUNNING" && ev.To == "THROTTLED" {
				s.Daemon, s.Cause, s.Woken = ev.MonoNS, strings.SplitN(ev.Cause, " ", 2)[0], strings.TrimPrefix(ev.Detail, "woken by ")
				s.Onset, s.WokenAt = ev.Onset, ev.Woken
				break
			}
		}
		f.Close()
	}
	cg.Kill()
	go io.Copy(io.Discard, out)
	cmd.Wait()
	if err := c.DeleteStep("bench", tid); err != nil {
		if ae, ok := err.(*api.APIError); !ok || ae.Status != 404 {
			return s, err
		}
	}
	if s.Daemon == 0 {
		return s, fmt.Errorf("step %s: no RUNNING->THROTTLED transition within 30s", tid)
	}
	if s.Onset != 0 && s.Onset < s.T0 {
		return s, errEarlyBreach
	}
	return s, nil
}
