package runner

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// sampler appends one trial.Sample per cgroup per period to the timeline.
type sampler struct {
	base atomic.Int64 // measure start, Unix ns; 0 until known
	quit chan struct{}
	wg   sync.WaitGroup
}

// base is the planned start of the measured phase; setBase moves it if the
// victims took longer to get ready.
func startSampler(mount string, cgroups []string, every time.Duration, path string, base time.Time) *sampler {
	if every <= 0 {
		every = trial.DefaultSampleEvery.D()
	}
	s := &sampler{quit: make(chan struct{})}
	s.base.Store(base.UnixNano())
	f, err := os.Create(path)
	if err != nil {
		return s
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer f.Close()
		w := bufio.NewWriter(f)
		defer w.Flush()
		enc := json.NewEncoder(w)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			now := time.Now()
			tms := (now.UnixNano() - s.base.Load()) / int64(time.Millisecond)
			for _, cg := range cgroups {
				smp := sampleCgroup(filepath.Join(mount, cg))
				smp.TMs, smp.Cgroup = tms, cg
				enc.Encode(smp)
			}
			select {
			case <-tk.C:
			case <-s.quit:
				return
			}
		}
	}()
	return s
}

func (s *sampler) setBase(t time.Time) { s.base.Store(t.UnixNano()) }

func (s *sampler) stop() {
	close(s.quit)
	s.wg.Wait()
}

func sampleCgroup(dir string) trial.Sample {
	var smp trial.Sample
	smp.MemoryCurrent = readInt(filepath.Join(dir, "memory.current"))
	ev := readKV(filepath.Join(dir, "memory.events"))
	smp.MemoryHigh, smp.MemoryMax, smp.OOMKill = ev["high"], ev["max"], ev["oom_kill"]
	cs := readKV(filepath.Join(dir, "cpu.stat"))
	smp.ThrottledUS, smp.UsageUS, smp.SystemUS = cs["throttled_usec"], cs["usage_usec"], cs["system_usec"]
	smp.HighLimit = readInt(filepath.Join(dir, "memory.high")) // "max" reads as 0
	if b, err := os.ReadFile(filepath.Join(dir, "memory.pressure")); err == nil {
		if p, err := trial.ParsePressure(string(b)); err == nil {
			smp.MemSomeAvg10, smp.MemFullAvg10 = p.Some.Avg10, p.Full.Avg10
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cpu.pressure")); err == nil {
		if p, err := trial.ParsePressure(string(b)); err == nil {
			smp.CPUSomeAvg10 = p.Some.Avg10
		}
	}
	return smp
}

func readInt(p string) int64 {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return v
}

func readKV(p string) map[string]int64 {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil
	}
	m, _ := trial.ParseFlatKeyed(string(b))
	return m
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
