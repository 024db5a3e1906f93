package flatcg

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/vmtest"
)

// BenchmarkVersusDefault compares scx_agent_flatcg with the kernel's
// default (fair) scheduler on an otherwise idle 2-CPU guest: wakeup
// latency of a periodic sleeper (p50/p99), CPU-bound throughput of two
// threads, and pipe ping-pong round trips (two wakeups each). Both runs
// happen in one boot, default first, and the ratios are reported as
// metrics (latency: flatcg/default, lower is better; throughput:
// flatcg/default, higher is better). Goal: p99 ratio <= 1.05,
// throughput ratio >= 0.95. Timings under TCG on a shared host are noisy.
func BenchmarkVersusDefault(b *testing.B) {
	if vmtest.Run(b, vmtest.Options{CPUs: 2, MemMB: 1024, Kernel: "stock", Timeout: 4 * time.Minute}) {
		return
	}
	root := testTree(b, "fcg-bench")
	def := benchRound(b, root, "default")
	s, err := Load(Config{})
	if err != nil {
		b.Fatal(err)
	}
	ext := benchRound(b, root, "flatcg")
	if ei, done, _ := s.Exited(); done {
		b.Fatalf("scheduler exited during the benchmark: %v", ei)
	}
	s.Close()

	b.Logf("default: wakeup p50 %v p99 %v, cpu %d units, pingpong %d trips", def.p50, def.p99, def.cpu, def.pp)
	b.Logf("flatcg:  wakeup p50 %v p99 %v, cpu %d units, pingpong %d trips", ext.p50, ext.p99, ext.cpu, ext.pp)
	b.ReportMetric(float64(ext.p50)/float64(def.p50), "p50-ratio")
	b.ReportMetric(float64(ext.p99)/float64(def.p99), "p99-ratio")
	b.ReportMetric(float64(ext.cpu)/float64(def.cpu), "cpu-thru-ratio")
	b.ReportMetric(float64(ext.pp)/float64(def.pp), "pingpong-ratio")
	b.ReportMetric(float64(def.p99.Microseconds()), "default-p99-us")
	b.ReportMetric(float64(ext.p99.Microseconds()), "flatcg-p99-us")
}

type benchResult struct {
	p50, p99 time.Duration
	cpu, pp  uint64
}

func benchRound(t testing.TB, root, name string) benchResult {
	dir := mkCgroup(t, root, name, 0, false)
	var r benchResult
	lat := runSleeper(t, dir, time.Millisecond, 2000)
	r.p50, r.p99 = percentile(lat, 0.5), percentile(lat, 0.99)
	r.cpu = runCount(t, dir, "work", "FLATCG_THREADS=2", "FLATCG_DURATION_MS=3000")
	r.pp = runCount(t, dir, "pingpong", "FLATCG_DURATION_MS=3000")
	return r
}

func runCount(t testing.TB, dir, helper string, env ...string) uint64 {
	t.Helper()
	out, err := startIn(t, dir, helper, env...).Output()
	if err != nil {
		t.Fatalf("%s: %v", helper, err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("%s output %q: %v", helper, out, err)
	}
	return n
}
