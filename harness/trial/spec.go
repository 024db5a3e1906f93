// Package trial is the typed boundary between the host runner and the guest
// runner (agentwork trial): Spec says what one trial does inside one fresh
// guest, Raw is what the guest leaves in its output directory. Both sides
// import this package; neither parses the other's files by hand.
package trial

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/internal/units"
)

// SpecVersion changes when a Spec written by an older host can no longer be
// run correctly by a newer guest (or the other way round).
const SpecVersion = 2

// Victim kinds.
const (
	VictimInteractive = "interactive"
	VictimToolBurst   = "tool_burst"
	VictimTrace       = "trace"
)

// Neighbour kinds.
const (
	NeighbourCPUSpin      = "cpu_spin"
	NeighbourForkStorm    = "fork_storm"
	NeighbourMemoryBlowup = "memory_blowup"
	NeighbourTrace        = "trace"
)

// Step classes, matching enum agc_class in bpf/include/agentcgroup.h.
const (
	ClassDefault     = "default"
	ClassInteractive = "interactive"
	ClassToolBurst   = "tool_burst"
	ClassBackground  = "background"
)

// Default binaries started for the scheduler and the daemon.
const (
	SchedulerBinary = "scx_agent_flatcg"
	DaemonBinary    = "agentcgroupd"
	// DaemonSocket is the daemon's API socket unless Process.Ready names
	// another; the runner waits for it and then creates every session
	// and step through the daemon, so the daemon knows their classes.
	DaemonSocket = "/run/agentcgroup/agentcgroupd.sock"
)

// CgroupRoot is the directory, relative to the cgroup2 mount, that holds
// every session: <root>/sess_<SID>/step_<TID>.
const CgroupRoot = "agentcgroup"

// Spec is everything one trial run in the guest needs.
type Spec struct {
	Version  int    `json:"version"`
	ID       string `json:"id"`                 // unique within a run; used in paths
	Scenario string `json:"scenario,omitempty"` // label only
	// Cell labels the trial's configuration in reports ("mem-only-full");
	// Stack is what that configuration runs, and the only thing the guest
	// runner consults to decide it.
	Cell  string       `json:"cell"`
	Stack stack.Config `json:"stack"`
	// Policy is the agentcgroupd policy file (TOML): the daemon runs on it,
	// and a static policy source writes step_policy from its profiles.
	Policy    string `json:"policy,omitempty"`
	Neighbour string `json:"neighbour,omitempty"` // label of the neighbour set, "none" for solo
	Rep       int    `json:"rep"`
	Solo      bool   `json:"solo,omitempty"` // victims alone, for slowdown
	Seed      uint64 `json:"seed"`

	Warmup   Duration `json:"warmup"`   // neighbours run, victims not yet measured
	Duration Duration `json:"duration"` // measured phase
	// SampleEvery is the timeline period (0: DefaultSampleEvery).
	SampleEvery Duration `json:"sample_every,omitempty"`

	Swap Swap `json:"swap"`

	Sessions   []Session   `json:"sessions"`
	Victims    []Victim    `json:"victims"`
	Neighbours []Neighbour `json:"neighbours,omitempty"`

	// Scheduler and Daemon adjust how the helpers Stack asks for start
	// (binary, extra flags, readiness); they never add a helper Stack does
	// not name.
	Scheduler *Process `json:"scheduler,omitempty"`
	Daemon    *Process `json:"daemon,omitempty"`

	// Sweep is the parameter assignment of a sweep cell (see
	// harness/sweep), in the sweep's parameter order; empty outside a
	// sweep. It records what the cell varies: Policy and Scheduler.Args
	// already carry the values, so the guest runner applies them without
	// reading this.
	Sweep []Setting `json:"sweep,omitempty"`
}

// Setting is one swept parameter's value. Durations are in milliseconds.
type Setting struct {
	Param string  `json:"param"`
	Value float64 `json:"value"`
}

// DefaultSampleEvery is the timeline period when Spec.SampleEvery is 0.
const DefaultSampleEvery = Duration(100 * time.Millisecond)

// Swap configures guest swap. ZramMB 0 means no swap.
type Swap struct {
	ZramMB int `json:"zram_mb"`
}

// Session is one agent session: a cgroup sess_<ID> holding step cgroups.
type Session struct {
	ID     string `json:"id"`
	Budget Budget `json:"budget,omitempty"` // on sess_<ID> itself
	Steps  []Step `json:"steps"`
}

// Step is one step cgroup sess_<SID>/step_<ID>.
type Step struct {
	ID     string `json:"id"`
	Class  string `json:"class"` // ClassDefault if empty
	Budget Budget `json:"budget,omitempty"`
}

// Budget holds cgroup knobs; a zero field leaves the kernel default.
type Budget struct {
	CPUWeight  int    `json:"cpu_weight,omitempty"`  // 1..10000
	CPUMax     string `json:"cpu_max,omitempty"`     // "QUOTA PERIOD" or "max PERIOD", as cpu.max takes it
	MemoryHigh Bytes  `json:"memory_high,omitempty"` // bytes
	MemoryMax  Bytes  `json:"memory_max,omitempty"`  // bytes
	PidsMax    int    `json:"pids_max,omitempty"`
}

// Victim is a measured workload. It runs in Session/Step.
type Victim struct {
	Name    string `json:"name"` // unique; names its histogram log
	Kind    string `json:"kind"`
	Session string `json:"session"`
	// Step is the step cgroup the victim runs in. A victim of a kind that
	// makes its own steps (RegisteredKind.OwnSteps) has none: a trace
	// victim makes one step cgroup per tool call under Session (named
	// step_<Name>-<n>) with the budget StepBudget.
	Step string `json:"step,omitempty"`

	Interactive *InteractiveParams `json:"interactive,omitempty"`
	ToolBurst   *ToolBurstParams   `json:"tool_burst,omitempty"`
	Trace       *TraceParams       `json:"trace,omitempty"`
	// Params holds the parameters of a registered kind (see
	// RegisterKind), as that kind encodes them.
	Params json.RawMessage `json:"params,omitempty"`
}

// InteractiveParams: a request every Period (open loop); each request does
// CPULoops iterations of a fixed mixing loop and writes TouchBytes of a
// WorkingSetBytes buffer. Latency is measured from the intended start.
type InteractiveParams struct {
	Period          Duration `json:"period"`
	CPULoops        int64    `json:"cpu_loops"`
	TouchBytes      Bytes    `json:"touch_bytes"`
	WorkingSetBytes Bytes    `json:"working_set_bytes"`
	// Idle delays the first request by this long after the measured
	// phase starts: the working set, faulted in while preparing, sits
	// untouched meanwhile, so whatever reclaim takes from it during the
	// idle time the requests fault back in (the case memory.low and
	// below_low protection exist for). 0: requests start at once.
	Idle Duration `json:"idle,omitempty"`
	// AllocProbeBytes, when > 0, makes every request also map, touch and
	// unmap this much fresh anonymous memory; the wall time of map+touch
	// is recorded in its own histogram (AllocHistogramPath): how long the
	// step waits for memory, apart from its CPU work.
	AllocProbeBytes Bytes `json:"alloc_probe_bytes,omitempty"`
}

// ToolBurstParams: a step forks Children child processes (re-executing
// agentwork), at most Parallel at once; each child does CPULoops and
// allocates and touches AllocBytes. Latency = step completion time. Steps
// start every Period (open loop; 0 means back to back).
type ToolBurstParams struct {
	Children   int      `json:"children"`
	Parallel   int      `json:"parallel"`
	CPULoops   int64    `json:"cpu_loops"`
	AllocBytes Bytes    `json:"alloc_bytes"`
	Period     Duration `json:"period,omitempty"`
}

// TraceParams replays a converted trace (workloads/traces/*.json, by name,
// or a path inside the guest).
type TraceParams struct {
	Trace string `json:"trace"`
	// Compress divides recorded durations and gaps (>= 1).
	Compress float64 `json:"compress"`
	// MemScale multiplies recorded memory (0 < MemScale <= 1 typically,
	// since recorded peaks are container totals).
	MemScale float64 `json:"mem_scale"`
	// MaxSteps bounds the number of replayed tool calls (0: all).
	MaxSteps   int    `json:"max_steps,omitempty"`
	StepBudget Budget `json:"step_budget,omitempty"`
	StepClass  string `json:"step_class,omitempty"`
	// Delay starts the session this long after the measured phase starts
	// (a neighbour: after it is started), so agents sharing a node do not
	// all begin at once. A victim's makespan counts from its own start.
	Delay Duration `json:"delay,omitempty"`
}

// Neighbour is an unmeasured noisy workload in Session/Step.
type Neighbour struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Session string `json:"session"`
	Step    string `json:"step"`

	CPUSpin      *CPUSpinParams      `json:"cpu_spin,omitempty"`
	ForkStorm    *ForkStormParams    `json:"fork_storm,omitempty"`
	MemoryBlowup *MemoryBlowupParams `json:"memory_blowup,omitempty"`
	// Trace replays a recorded session over and over until the neighbour
	// is stopped, every tool call a child process in the neighbour's own
	// step cgroup (StepBudget and StepClass do not apply).
	Trace *TraceParams `json:"trace,omitempty"`
	// Params holds the parameters of a registered kind (see
	// RegisterKind), as that kind encodes them.
	Params json.RawMessage `json:"params,omitempty"`
}

// CPUSpinParams: Threads busy threads.
type CPUSpinParams struct {
	Threads int `json:"threads"`
}

// ForkStormParams: fork+exit children at Rate per second (0: as fast as
// possible), at most Concurrency alive at once; pids.max bounds it too.
// Each child lives Hold (0: exits at once), which is what lets a storm
// reach pids.max. Exec, when set, is a program each child executes (e.g.
// "/bin/true") instead of the plain fork/exit; Hold does not apply to it.
type ForkStormParams struct {
	Rate        float64  `json:"rate"`
	Concurrency int      `json:"concurrency"`
	Hold        Duration `json:"hold,omitempty"`
	Exec        string   `json:"exec,omitempty"`
}

// MemoryBlowupParams: allocate and touch non-zero data at RateBytesPerSec
// (0: as fast as possible) up to TargetBytes, then keep re-touching it.
type MemoryBlowupParams struct {
	TargetBytes     Bytes `json:"target_bytes"`
	RateBytesPerSec Bytes `json:"rate_bytes_per_sec"`
	ChunkBytes      Bytes `json:"chunk_bytes,omitempty"` // 0: 1 MiB
	// Fill says what the pages hold: FillSparse (default) writes one word
	// per 512 bytes into zero pages, which zram stores for a fraction of
	// a page at little cost; FillRandom writes seeded random bytes over
	// every page, which no compressor shrinks, so every page reclaimed to
	// zram costs a failed compression and a full page of zram memory.
	Fill string `json:"fill,omitempty"`
	// Threads grow and re-touch the data in parallel, each its share of
	// TargetBytes and RateBytesPerSec (0 or 1: one thread); each thread
	// faulting and reclaiming keeps a CPU busy.
	Threads int `json:"threads,omitempty"`
}

// Memory blow-up fills.
const (
	FillSparse = "sparse"
	FillRandom = "random"
)

// Process adjusts a helper process (scheduler or daemon) of the trial.
type Process struct {
	Binary string `json:"binary,omitempty"` // default SchedulerBinary / DaemonBinary
	// Args are appended to the flags the configuration implies.
	Args []string `json:"args,omitempty"`
	// Ready is a path that must exist before the trial proceeds. Empty:
	// the daemon waits for DaemonSocket, the scheduler for
	// /sys/kernel/sched_ext/state to read "enabled".
	Ready     string   `json:"ready,omitempty"`
	ReadyWait Duration `json:"ready_wait,omitempty"` // 0: 10s for Ready, 500ms otherwise
}

// Duration and Bytes are the project's units (internal/units). In JSON a
// duration reads "1.5s" or integer nanoseconds and writes "1.5s"; a byte
// count reads an integer or a string such as "64M" and writes an integer.
type (
	Duration = units.Duration
	Bytes    = units.Bytes
)

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func checkID(what, id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("%s %q: use 1-64 letters, digits, '_', '.', '-' (starting with a letter or digit)", what, id)
	}
	return nil
}

// StepPath is the cgroup path of a step relative to the cgroup2 mount.
func StepPath(session, step string) string {
	return CgroupRoot + "/sess_" + session + "/step_" + step
}

// SessionPath is the cgroup path of a session relative to the cgroup2 mount.
func SessionPath(session string) string {
	return CgroupRoot + "/sess_" + session
}

// ReadSpec reads and validates a Spec file.
func ReadSpec(path string) (*Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trial spec: %w", err)
	}
	return DecodeSpec(b)
}

// DecodeSpec parses and validates JSON; unknown fields are errors so a
// typo does not silently fall back to a default.
func DecodeSpec(b []byte) (*Spec, error) {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var s Spec
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("trial spec: %v", err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Encode returns indented JSON.
func (s *Spec) Encode() ([]byte, error) {
	return json.MarshalIndent(s, "", "  ")
}
