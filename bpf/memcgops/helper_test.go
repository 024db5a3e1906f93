package memcgops

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/bpf/mempressure/pressuretest"
	"golang.org/x/sys/unix"
)

// The test binary doubles as its own workload: with MAO_HELPER set it runs
// one of the memory helpers below instead of the tests, so a test can start
// it inside a cgroup (the guest has the test binary, not a toolbox).
func TestMain(m *testing.M) {
	pressuretest.MaybeRun()
	if h := os.Getenv("MAO_HELPER"); h != "" {
		if err := runHelper(h); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const pageSize = 4096

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// touchReport is what the "touch" helper prints: the pauses it saw while
// faulting pages in, each a throttle event.
type touchReport struct {
	PauseMS  []float64 `json:"pause_ms"`
	Pages    int       `json:"pages"`
	TotalMS  float64   `json:"total_ms"`
	MaxMS    float64   `json:"max_ms"`   // longest single page touch
	Complete bool      `json:"complete"` // touched everything asked for

	// PauseSysMS is the thread's system CPU time during each pause (with
	// MAO_SYSTIME set): near zero when a pause is a sleep, most of it when
	// the pause is the kernel reclaiming on the task's behalf.
	PauseSysMS []float64 `json:"pause_sys_ms,omitempty"`
	// PauseOffCPUMS is how long the thread was off the CPU during each
	// pause (with MAO_SYSTIME set): the pause's wall time less the user
	// and system time rusage reports, whose sum is the scheduler's exact
	// run time. A throttle sleep shows here in full. Reclaim does not, nor
	// does the host descheduling an emulated CPU (the guest counts that as
	// run time); waiting on the guest's run queue would, but the guest
	// runs nothing else. A voluntary context switch is not the same
	// signal: this thread is locked, so each time the Go runtime preempts
	// it (every 10 ms on the CPU) it sleeps briefly while another thread
	// hands it back.
	PauseOffCPUMS []float64 `json:"pause_off_cpu_ms,omitempty"`
}

// worksetReport is what the "workset" helper prints after re-touching its
// working set once the pressure is over.
type worksetReport struct {
	RetouchMS    float64 `json:"retouch_ms"`
	MajorFaults  int64   `json:"major_faults"` // during the re-touch: pages that had left RAM
	CorruptPages int     `json:"corrupt_pages"`
}

func cpuNS(ru *unix.Rusage) int64 {
	return unix.TimevalToNsec(ru.Utime) + unix.TimevalToNsec(ru.Stime)
}

func mapAnon(mb int) ([]byte, error) {
	return unix.Mmap(-1, 0, mb<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
}

// fill writes a page-specific non-zero pattern (zram drops zero pages, and
// the pattern lets the re-touch verify the data).
func fill(b []byte, page int) {
	v := byte(page%251) + 1
	for i := 0; i < pageSize; i += 64 {
		b[i] = v
	}
}

func runHelper(kind string) error {
	switch kind {
	case "touch":
		// Fault in MAO_MB MiB one page at a time; a page that takes longer
		// than MAO_PAUSE_MS is a throttle pause. Stop after MAO_EVENTS.
		mb, events := envInt("MAO_MB", 64), envInt("MAO_EVENTS", 1<<30)
		pause := time.Duration(envInt("MAO_PAUSE_MS", 100)) * time.Millisecond
		sysTime := os.Getenv("MAO_SYSTIME") != ""
		if sysTime {
			// RUSAGE_THREAD counts this thread only: keep the touches on it.
			runtime.LockOSThread()
		}
		buf, err := mapAnon(mb)
		if err != nil {
			return err
		}
		var r touchReport
		var ru0, ru1 unix.Rusage
		start := time.Now()
		n := len(buf) / pageSize
		for p := 0; p < n; p++ {
			if sysTime {
				unix.Getrusage(unix.RUSAGE_THREAD, &ru0)
			}
			t0 := time.Now()
			fill(buf[p*pageSize:], p)
			d := time.Since(t0)
			if sysTime && d >= pause {
				unix.Getrusage(unix.RUSAGE_THREAD, &ru1)
				// The rusage reads bracket the touch a little wider than
				// the clock reads, so the difference can dip below zero.
				off := max(0, d.Nanoseconds()-(cpuNS(&ru1)-cpuNS(&ru0)))
				r.PauseSysMS = append(r.PauseSysMS, float64(unix.TimevalToNsec(ru1.Stime)-unix.TimevalToNsec(ru0.Stime))/1e6)
				r.PauseOffCPUMS = append(r.PauseOffCPUMS, float64(off)/1e6)
			}
			r.Pages++
			if ms := float64(d) / float64(time.Millisecond); ms > r.MaxMS {
				r.MaxMS = ms
			}
			if d >= pause {
				r.PauseMS = append(r.PauseMS, float64(d)/float64(time.Millisecond))
				if len(r.PauseMS) >= events {
					break
				}
			}
		}
		r.Complete = r.Pages == n
		r.TotalMS = float64(time.Since(start)) / float64(time.Millisecond)
		return json.NewEncoder(os.Stdout).Encode(r)
	case "workset":
		// Build a MAO_MB working set, report ready, go idle until the
		// MAO_GO file appears, then touch every page again.
		mb := envInt("MAO_MB", 32)
		buf, err := mapAnon(mb)
		if err != nil {
			return err
		}
		n := len(buf) / pageSize
		for p := 0; p < n; p++ {
			fill(buf[p*pageSize:], p)
		}
		if err := os.WriteFile(os.Getenv("MAO_READY"), []byte("1"), 0o644); err != nil {
			return err
		}
		for {
			if _, err := os.Stat(os.Getenv("MAO_GO")); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		var ru0, ru1 unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &ru0)
		start := time.Now()
		var r worksetReport
		for p := 0; p < n; p++ {
			if buf[p*pageSize] != byte(p%251)+1 {
				r.CorruptPages++
			}
		}
		r.RetouchMS = float64(time.Since(start)) / float64(time.Millisecond)
		unix.Getrusage(unix.RUSAGE_SELF, &ru1)
		r.MajorFaults = ru1.Majflt - ru0.Majflt
		return json.NewEncoder(os.Stdout).Encode(r)
	case "hog":
		// Touch MAO_MB MiB, MAO_PASSES times over: a background step that
		// keeps its parent at its limit.
		mb, passes := envInt("MAO_MB", 128), envInt("MAO_PASSES", 2)
		buf, err := mapAnon(mb)
		if err != nil {
			return err
		}
		n := len(buf) / pageSize
		for i := 0; i < passes; i++ {
			for p := 0; p < n; p++ {
				fill(buf[p*pageSize:], p+i)
			}
		}
		return nil
	}
	return fmt.Errorf("unknown MAO_HELPER %q", kind)
}
