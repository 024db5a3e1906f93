package runner

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
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
	cg := cgroupfs.Cgroup{Path: dir}
	cur, _ := cg.ReadUint("memory.current")
	high, _ := cg.ReadUint("memory.high") // "max" is no number: 0
	smp.MemoryCurrent, smp.HighLimit = int64(cur), int64(high)
	ev, _ := cg.FlatKeyed("memory.events")
	smp.MemoryHigh, smp.MemoryMax, smp.OOMKill = int64(ev["high"]), int64(ev["max"]), int64(ev["oom_kill"])
	cs, _ := cg.FlatKeyed("cpu.stat")
	smp.ThrottledUS, smp.UsageUS, smp.SystemUS = int64(cs["throttled_usec"]), int64(cs["usage_usec"]), int64(cs["system_usec"])
	if p, err := cg.Pressure("memory.pressure"); err == nil {
		smp.MemSomeAvg10, smp.MemFullAvg10 = p.Some.Avg10, p.Full.Avg10
	}
	if p, err := cg.Pressure("cpu.pressure"); err == nil {
		smp.CPUSomeAvg10 = p.Some.Avg10
	}
	return smp
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
