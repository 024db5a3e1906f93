// Package eventlog writes the daemon's JSON-lines event log. Every line
// carries a CLOCK_MONOTONIC timestamp (the clock bpf_ktime_get_ns reads), so
// daemon actions can be lined up with kernel-side timestamps in the pressure
// maps to measure reaction times.
package eventlog

import (
	"encoding/json"
	"io"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Event is one line. Kind is one of: transition, step_created, step_removed,
// step_adopted, burst_start, burst_end, session_started, session_ended,
// config_loaded, config_rejected, probe, scheduler, memory_mode, error, and
// for mainline memory.low protection protected, protection_revoked (Cause
// budget, max or oom), unprotected (the profile stopped asking for it) and
// protect_failed.
type Event struct {
	MonoNS   uint64 `json:"mono_ns"`
	Time     string `json:"time"`
	Kind     string `json:"event"`
	Session  string `json:"session,omitempty"`
	Step     string `json:"step,omitempty"`
	CgroupID uint64 `json:"cgroup_id,omitempty"`

	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Action string `json:"action,omitempty"`
	Cause  string `json:"cause,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
	// On a kill transition, what allowed it: "max" or "oom" (the step at
	// its memory.max), "others_hurt" (other steps' memory pressure) or
	// "node_low" (the node guard: MemAvailable at its floor).
	KillCause string `json:"kill_cause,omitempty"`

	ThrashScore  uint32            `json:"thrash_score,omitempty"`
	MemoryEvents map[string]uint64 `json:"memory_events,omitempty"`
	// Start of the kernel-observed pressure episode and the time from it to
	// this event, when the probe saw one.
	OnsetMonoNS uint64 `json:"onset_mono_ns,omitempty"`
	ReactionNS  int64  `json:"reaction_ns,omitempty"`
	// When the signal that led to this event reached the daemon.
	WokenMonoNS uint64 `json:"woken_mono_ns,omitempty"`

	// The daemon's memory mode (mainline or full), on config_loaded and
	// memory_mode events.
	MemoryMode string `json:"memory_mode,omitempty"`

	Detail string `json:"detail,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Log serialises events to a writer.
type Log struct {
	mu sync.Mutex
	w  io.Writer
}

// New writes to w.
func New(w io.Writer) *Log { return &Log{w: w} }

// Mono returns CLOCK_MONOTONIC in ns.
func Mono() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// Emit stamps and writes one event.
func (l *Log) Emit(e Event) {
	if e.MonoNS == 0 {
		e.MonoNS = Mono()
	}
	e.Time = time.Now().UTC().Format(time.RFC3339Nano)
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Write(append(b, '\n'))
}
