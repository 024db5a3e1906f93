package trial

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Layout of one trial's output directory (the guest's /out/trial, copied to
// results/<run>/trials/<id>/ by the host). Paths are relative to that dir.
const (
	ManifestFile  = "manifest.json"
	VictimsDir    = "victims" // <victim name>.hlog
	HistogramExt  = ".hlog"   // HdrHistogram interval log (hdrhistogram-go log writer)
	SnapshotsDir  = "snapshots"
	BeforeFile    = "snapshots/before.json" // Snapshot before neighbours start
	AfterFile     = "snapshots/after.json"  // Snapshot after victims finish
	TimelineFile  = "timeline.jsonl"        // one Sample per line
	LogsDir       = "logs"
	SchedulerLog  = "logs/scheduler.log"
	DaemonLog     = "logs/daemon.log"
	WorkloadsLog  = "logs/workloads.log" // stderr of workload processes
	ManifestVer   = 2
	LatencyUnitUS = "us" // histogram values are microseconds
)

// HistogramPath is the relative path of a victim's interval log.
func HistogramPath(victim string) string {
	return VictimsDir + "/" + victim + HistogramExt
}

// AllocHistogramPath is the relative path of a victim's allocation-latency
// interval log (InteractiveParams.AllocProbeBytes).
func AllocHistogramPath(victim string) string {
	return VictimsDir + "/" + victim + ".alloc" + HistogramExt
}

// Histogram bounds for latencies in microseconds (1 us .. 1 hour, 3 digits).
const (
	HistMinUS   = 1
	HistMaxUS   = 3600 * 1000 * 1000
	HistSigFigs = 3
)

// NewLatencyHistogram returns a histogram sized for victim latencies.
func NewLatencyHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(HistMinUS, HistMaxUS, HistSigFigs)
}

// Manifest says what ran, when, and what went wrong.
type Manifest struct {
	Version    int              `json:"version"`
	Spec       Spec             `json:"spec"`
	Kernel     string           `json:"kernel"`         // uname -r
	Started    time.Time        `json:"started"`        // guest clock
	Finished   time.Time        `json:"finished"`       // guest clock
	Phases     []Phase          `json:"phases"`         // setup, warmup, measure, teardown
	Victims    []WorkloadResult `json:"victims"`        // one per spec victim, same order
	Neighbours []WorkloadResult `json:"neighbours"`     // one per spec neighbour, same order
	Processes  []ProcessResult  `json:"processes"`      // scheduler, daemon when asked
	Swap       string           `json:"swap,omitempty"` // what swap was active, e.g. "zram0 256M"
	// CPULoopsPerMs is the guest's speed at the workloads' CPU loop,
	// measured before anything started (turns cpu_loops into time).
	CPULoopsPerMs int64 `json:"cpu_loops_per_ms"`
	// GuestCPUs is the number of CPUs the guest had online.
	GuestCPUs int      `json:"guest_cpus,omitempty"`
	Cgroups   []string `json:"cgroups"`          // every cgroup snapshotted (relative to the mount)
	Errors    []string `json:"errors,omitempty"` // anything that makes the trial suspect
	OK        bool     `json:"ok"`               // no errors: usable for analysis
}

// Phase is a named interval on the guest clock.
type Phase struct {
	Name  string    `json:"name"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// WorkloadResult is one victim's or neighbour's outcome.
type WorkloadResult struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Cgroup string `json:"cgroup"` // relative to the mount; trace: the session
	// Histogram is the interval log's relative path (victims only).
	Histogram string `json:"histogram,omitempty"`
	Count     int64  `json:"count"`            // completed requests/steps (victims) or operations (neighbours)
	Failed    int64  `json:"failed,omitempty"` // requests/steps/children that failed
	// Nominal is, for trace victims, the sum of the compressed recorded
	// step durations (what the replay would take with no interference).
	Nominal  Duration `json:"nominal,omitempty"`
	Elapsed  Duration `json:"elapsed"`
	ExitCode int      `json:"exit_code"` // of the workload process; -1 if killed by a signal
	Error    string   `json:"error,omitempty"`
	// Signal names the signal that ended the workload process, when one
	// did (e.g. "killed").
	Signal string `json:"signal,omitempty"`
	// OOMKilled: the kernel's OOM killer ended the workload process (it
	// died of SIGKILL while its cgroup's memory.events.local oom_kill
	// grew). For a victim this is an outcome, a failed session, not a
	// broken trial: the trial stays usable, the victim has no latencies.
	OOMKilled bool `json:"oom_killed,omitempty"`
	// Stalled: a victim that had not finished its measured phase when the
	// runner's deadline (the phase plus a grace) passed, in a trial with
	// neighbours, and was killed without a result. Like OOMKilled it is
	// an outcome, a failed session with no latencies.
	Stalled bool `json:"stalled,omitempty"`
	// AllocHistogram is the allocation-latency interval log's relative
	// path and AllocCount the probes in it (victims with an alloc probe).
	AllocHistogram string `json:"alloc_histogram,omitempty"`
	AllocCount     int64  `json:"alloc_count,omitempty"`
	// Steps is a trace victim's steps log's relative path
	// (TraceStepsPath).
	Steps string `json:"steps,omitempty"`
}

// ProcessResult is a helper process's outcome.
type ProcessResult struct {
	Name     string   `json:"name"` // "scheduler" or "daemon"
	Binary   string   `json:"binary"`
	Args     []string `json:"args"`
	Started  bool     `json:"started"`
	ExitCode int      `json:"exit_code"`       // after we stopped it; -1 if it died by our SIGTERM/SIGKILL
	Log      string   `json:"log"`             // relative path
	Error    string   `json:"error,omitempty"` // e.g. binary not found, exited early
	// SchedExt is /sys/kernel/sched_ext/state while the process ran
	// (scheduler only), e.g. "enabled".
	SchedExt string `json:"sched_ext,omitempty"`
	// CPUMs is the process's user+system CPU time over the whole trial
	// (from its rusage once reaped): what the control plane itself cost.
	CPUMs float64 `json:"cpu_ms,omitempty"`
	// StartupCPUMs is its CPU time until it was ready (BPF load,
	// verification, attach); SteadyCPUMs its CPU time from then to the end
	// of the measured phase, SteadyMs that span's wall time. Steady CPU
	// over steady wall time is what the enforcer costs while it enforces.
	StartupCPUMs float64 `json:"startup_cpu_ms,omitempty"`
	SteadyCPUMs  float64 `json:"steady_cpu_ms,omitempty"`
	SteadyMs     float64 `json:"steady_ms,omitempty"`
	// The steady span in two parts. SetupCPUMs is its CPU time from
	// readiness to the start of the measured phase: creating the trial's
	// sessions and steps (cgroup mkdir, limits, PSI triggers), which the
	// runner does itself in configurations without the daemon, and the
	// warmup. MeasureCPUMs is its CPU time over the measured phase and
	// MeasureMs that phase's wall time: what it took from the guest while
	// the victims were measured, steps made during the run included.
	SetupCPUMs   float64 `json:"setup_cpu_ms,omitempty"`
	MeasureCPUMs float64 `json:"measure_cpu_ms,omitempty"`
	MeasureMs    float64 `json:"measure_ms,omitempty"`
}

// Snapshot holds raw cgroup interface files at one moment.
type Snapshot struct {
	Time time.Time `json:"time"`
	// Cgroups maps a cgroup path (relative to the mount, "" = root) to
	// file name -> content, for SnapshotFiles that exist.
	Cgroups map[string]map[string]string `json:"cgroups"`
	// System holds SnapshotSystemFiles that exist, by path.
	System map[string]string `json:"system"`
}

// SnapshotSystemFiles are the guest-wide files captured with every
// snapshot. /proc/stat's idle, irq and softirq time and the interrupt
// counts say where CPU time went that no cgroup was charged for (a guest
// idling while its cgroups have runnable tasks, interrupt storms), and the
// clocksource whether time itself was slow to read.
var SnapshotSystemFiles = []string{
	"/proc/pressure/cpu", "/proc/pressure/memory", "/proc/pressure/io",
	"/proc/vmstat", "/proc/meminfo", "/proc/swaps",
	"/proc/stat", "/proc/softirqs", "/proc/interrupts",
	"/sys/devices/system/clocksource/clocksource0/current_clocksource",
}

// SnapshotFiles are the interface files captured per cgroup.
var SnapshotFiles = []string{
	"memory.events", "memory.events.local", "memory.stat", "memory.current",
	"memory.peak", "memory.swap.current", "memory.swap.events", "memory.pressure",
	"cpu.stat", "cpu.pressure", "io.pressure", "pids.current", "pids.events",
	// the budgets in force, so a report can show what was enforced
	"cpu.max", "cpu.weight", "memory.high", "memory.max", "pids.max",
}

// Sample is one timeline row for one cgroup.
type Sample struct {
	TMs           int64   `json:"t_ms"` // since the measure phase's start (negative during warmup)
	Cgroup        string  `json:"cgroup"`
	MemoryCurrent int64   `json:"memory_current"`
	MemoryHigh    int64   `json:"memory_high_events"` // memory.events high (cumulative)
	MemoryMax     int64   `json:"memory_max_events"`  // memory.events max
	OOMKill       int64   `json:"oom_kill"`
	MemSomeAvg10  float64 `json:"mem_some_avg10"`
	MemFullAvg10  float64 `json:"mem_full_avg10"`
	CPUSomeAvg10  float64 `json:"cpu_some_avg10"`
	ThrottledUS   int64   `json:"throttled_usec"` // cpu.stat throttled_usec (cumulative)
	UsageUS       int64   `json:"usage_usec"`     // cpu.stat usage_usec (cumulative)
	// SystemUS is cpu.stat system_usec (cumulative): kernel time, where
	// faults and direct reclaim are charged.
	SystemUS int64 `json:"system_usec,omitempty"`
	// HighLimit is memory.high at the sample, in bytes (0: "max" or not
	// read); the daemon may move it during a trial.
	HighLimit int64 `json:"memory_high,omitempty"`
}

// Raw is one trial's output, loaded and checked.
type Raw struct {
	Dir      string
	Manifest Manifest
	// Intervals holds each victim's interval histograms in log order;
	// AllocIntervals the same for victims with an allocation probe.
	Intervals      map[string][]*hdrhistogram.Histogram
	AllocIntervals map[string][]*hdrhistogram.Histogram
	// Steps holds each trace victim's replayed steps, in log order.
	Steps    map[string][]TraceStep
	Before   Snapshot
	After    Snapshot
	Timeline []Sample
	Evidence Evidence
}

// Merged returns the victim's whole-trial histogram (nil if unknown).
func (r *Raw) Merged(victim string) *hdrhistogram.Histogram {
	return merge(r.Intervals, victim)
}

// MergedAlloc returns the victim's whole-trial allocation-latency
// histogram (nil when it had no probe).
func (r *Raw) MergedAlloc(victim string) *hdrhistogram.Histogram {
	return merge(r.AllocIntervals, victim)
}

func merge(m map[string][]*hdrhistogram.Histogram, victim string) *hdrhistogram.Histogram {
	iv, ok := m[victim]
	if !ok {
		return nil
	}
	h := NewLatencyHistogram()
	for _, x := range iv {
		h.Merge(x)
	}
	return h
}

// Load reads a trial directory and checks it is complete and consistent.
// A manifest with OK=false still loads (so failures can be reported); a
// missing or malformed file is an error.
func Load(dir string) (Raw, error) {
	r := Raw{Dir: dir, Intervals: map[string][]*hdrhistogram.Histogram{}, AllocIntervals: map[string][]*hdrhistogram.Histogram{},
		Steps: map[string][]TraceStep{}}
	if err := readJSON(filepath.Join(dir, ManifestFile), &r.Manifest); err != nil {
		return r, err
	}
	m := &r.Manifest
	if m.Version != ManifestVer {
		return r, fmt.Errorf("%s: manifest version %d, this build reads %d (re-run the trial with this build)", dir, m.Version, ManifestVer)
	}
	var errs []error
	if err := m.Spec.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("manifest spec: %w", err))
	}
	if len(m.Victims) != len(m.Spec.Victims) {
		errs = append(errs, fmt.Errorf("manifest has %d victim results for %d spec victims", len(m.Victims), len(m.Spec.Victims)))
	}
	if len(m.Neighbours) != len(m.Spec.Neighbours) {
		errs = append(errs, fmt.Errorf("manifest has %d neighbour results for %d spec neighbours", len(m.Neighbours), len(m.Spec.Neighbours)))
	}
	if m.OK && len(m.Errors) > 0 {
		errs = append(errs, fmt.Errorf("manifest says ok but lists %d errors", len(m.Errors)))
	}
	if m.Finished.Before(m.Started) {
		errs = append(errs, fmt.Errorf("manifest finished %v before started %v", m.Finished, m.Started))
	}
	for i, v := range m.Victims {
		if i < len(m.Spec.Victims) && v.Name != m.Spec.Victims[i].Name {
			errs = append(errs, fmt.Errorf("victim result %d is %q, spec says %q", i, v.Name, m.Spec.Victims[i].Name))
		}
		if v.AllocHistogram != "" {
			iv, err := readHistogramLog(filepath.Join(dir, v.AllocHistogram))
			if err != nil {
				errs = append(errs, fmt.Errorf("victim %q allocation latency: %w", v.Name, err))
			} else if total := totalCount(iv); total != v.AllocCount {
				errs = append(errs, fmt.Errorf("victim %q: allocation histogram holds %d values, manifest alloc_count %d", v.Name, total, v.AllocCount))
			} else {
				r.AllocIntervals[v.Name] = iv
			}
		}
		if v.Steps != "" {
			if steps, _, err := ReadTraceSteps(filepath.Join(dir, v.Steps)); err != nil {
				errs = append(errs, fmt.Errorf("victim %q steps: %w", v.Name, err))
			} else {
				r.Steps[v.Name] = steps
			}
		}
		if v.Histogram == "" {
			// An OOM-killed or stalled victim left no result: that is
			// its outcome.
			if m.OK && !v.OOMKilled && !v.Stalled {
				errs = append(errs, fmt.Errorf("victim %q: no histogram in a trial marked ok", v.Name))
			}
			continue
		}
		iv, err := readHistogramLog(filepath.Join(dir, v.Histogram))
		if err != nil {
			errs = append(errs, fmt.Errorf("victim %q: %w", v.Name, err))
			continue
		}
		if total := totalCount(iv); total != v.Count {
			errs = append(errs, fmt.Errorf("victim %q: histogram holds %d values, manifest count %d", v.Name, total, v.Count))
		}
		r.Intervals[v.Name] = iv
	}
	if err := readJSON(filepath.Join(dir, BeforeFile), &r.Before); err != nil {
		errs = append(errs, err)
	}
	if err := readJSON(filepath.Join(dir, AfterFile), &r.After); err != nil {
		errs = append(errs, err)
	}
	for _, cg := range m.Cgroups {
		if _, ok := r.Before.Cgroups[cg]; !ok && r.Before.Cgroups != nil {
			errs = append(errs, fmt.Errorf("%s: cgroup %q missing", BeforeFile, cg))
		}
		if _, ok := r.After.Cgroups[cg]; !ok && r.After.Cgroups != nil {
			errs = append(errs, fmt.Errorf("%s: cgroup %q missing", AfterFile, cg))
		}
	}
	if err := readJSON(filepath.Join(dir, EvidenceFile), &r.Evidence); err != nil {
		errs = append(errs, err)
	}
	tl, err := readTimeline(filepath.Join(dir, TimelineFile))
	if err != nil {
		errs = append(errs, err)
	}
	r.Timeline = tl
	for _, p := range m.Processes {
		if p.Started {
			if _, err := os.Stat(filepath.Join(dir, p.Log)); err != nil {
				errs = append(errs, fmt.Errorf("%s log: %w", p.Name, err))
			}
		}
	}
	if len(errs) > 0 {
		return r, fmt.Errorf("trial %s: %w", dir, errors.Join(errs...))
	}
	return r, nil
}

func totalCount(iv []*hdrhistogram.Histogram) int64 {
	var n int64
	for _, h := range iv {
		n += h.TotalCount()
	}
	return n
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("trial output incomplete: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}

func readHistogramLog(path string) ([]*hdrhistogram.Histogram, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	rd := hdrhistogram.NewHistogramLogReader(strings.NewReader(string(b)))
	var out []*hdrhistogram.Histogram
	for {
		h, err := rd.NextIntervalHistogram()
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		if h == nil {
			break
		}
		out = append(out, h)
	}
	return out, nil
}

func readTimeline(path string) ([]Sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("trial output incomplete: %w", err)
	}
	defer f.Close()
	return DecodeTimeline(f, path)
}

// DecodeTimeline reads JSON-lines samples; name is used in errors.
func DecodeTimeline(rd io.Reader, name string) ([]Sample, error) {
	var out []Sample
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var s Sample
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return out, fmt.Errorf("%s:%d: %v", name, line, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}
