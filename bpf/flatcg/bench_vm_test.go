package flatcg

import (
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/vmtest"
)

// BenchmarkVersusDefault compares scx_agent_flatcg with the kernel's
// default (fair) scheduler on an otherwise idle 2-CPU guest: wakeup
// latency of a periodic 1ms sleeper (p50/p99), CPU-bound throughput of two
// threads, and pipe ping-pong round trips (two wakeups each). Rounds
// alternate default and flatcg in one boot so that drift in host load hits
// both alike; each reported ratio (flatcg/default) is the median over the
// rounds. Latency: lower is better; throughput: higher is better. Goal:
// p99 ratio <= 1.05, throughput ratio >= 0.95. Under TCG on a shared host
// the absolute numbers are noisy; compare ratios from one run only.
func BenchmarkVersusDefault(b *testing.B) {
	if vmtest.Run(b, vmtest.Options{CPUs: 2, MemMB: 1024, Kernel: "stock", Timeout: 6 * time.Minute}) {
		return
	}
	const rounds = 3
	root := testTree(b, "fcg-bench")
	var p50, p99, cpu, pp []float64
	for r := 0; r < rounds; r++ {
		def := benchRound(b, root, "default"+strconv.Itoa(r))
		s, err := Load(Config{})
		if err != nil {
			b.Fatal(err)
		}
		ext := benchRound(b, root, "flatcg"+strconv.Itoa(r))
		if c, err := s.Counters(); err == nil {
			b.Logf("round %d flatcg counters: %+v", r, c)
		}
		if ei, done, _ := s.Exited(); done {
			b.Fatalf("scheduler exited during the benchmark: %v", ei)
		}
		s.Close()
		b.Logf("round %d default: wakeup p50 %v p99 %v, cpu %d units, pingpong %d trips", r, def.p50, def.p99, def.cpu, def.pp)
		b.Logf("round %d flatcg:  wakeup p50 %v p99 %v, cpu %d units, pingpong %d trips", r, ext.p50, ext.p99, ext.cpu, ext.pp)
		p50 = append(p50, float64(ext.p50)/float64(def.p50))
		p99 = append(p99, float64(ext.p99)/float64(def.p99))
		cpu = append(cpu, float64(ext.cpu)/float64(def.cpu))
		pp = append(pp, float64(ext.pp)/float64(def.pp))
	}
	b.ReportMetric(median(p50), "p50-ratio")
	b.ReportMetric(median(p99), "p99-ratio")
	b.ReportMetric(median(cpu), "cpu-thru-ratio")
	b.ReportMetric(median(pp), "pingpong-ratio")
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

type benchResult struct {
	p50, p99 time.Duration
	cpu, pp  uint64
}

func benchRound(t testing.TB, root, name string) benchResult {
	dir := mkCgroup(t, root, name, 0, false)
	var r benchResult
	lat := runSleeper(t, dir, time.Millisecond, 1000)
	r.p50, r.p99 = percentile(lat, 0.5), percentile(lat, 0.99)
	r.cpu = runCount(t, dir, "work", "FLATCG_THREADS=2", "FLATCG_DURATION_MS=2000")
	r.pp = runCount(t, dir, "pingpong", "FLATCG_DURATION_MS=2000")
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
