package trial

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
)

// TraceStepsPath is the relative path of a trace victim's steps log: one
// TraceStep line per replayed tool call, then one TraceSession line.
func TraceStepsPath(victim string) string {
	return VictimsDir + "/" + victim + ".steps.jsonl"
}

// TraceStep is one replayed tool call in a trace victim's steps log; times
// count from the session's start.
type TraceStep struct {
	Step    int      `json:"step"`
	Tool    string   `json:"tool"`
	After   []int    `json:"after,omitempty"` // steps it waited for
	Offset  Duration `json:"offset"`          // recorded start, compressed
	Nominal Duration `json:"nominal"`         // recorded duration, compressed
	Due     Duration `json:"due"`             // when the schedule released it
	Began   Duration `json:"began"`
	Latency Duration `json:"latency"` // its wall time from Began
	Error   string   `json:"error,omitempty"`
	// Fidelity compares what the step used with its scaled recording;
	// absent for a step that never ran.
	Fidelity *StepFidelity `json:"fidelity,omitempty"`
}

// TraceSession ends a trace victim's steps log: the replayed session's
// makespan against the recorded one (both compressed).
type TraceSession struct {
	Session  string   `json:"session"`
	Trace    string   `json:"trace"`
	Steps    int      `json:"steps"`   // planned
	Started  int      `json:"started"` // the rest were due after the measured phase
	Makespan Duration `json:"makespan"`
	Recorded Duration `json:"recorded_makespan"`
}

// FidelityTolerance is how far a replayed step's peak memory or CPU time
// may be from its scaled recording and still count as reproduced: 10%
// either way.
const FidelityTolerance = 0.10

// Verdicts of one Measure.
const (
	FidelityWithin = "within" // within FidelityTolerance of the recording
	FidelityOff    = "off"    // further off
	// FidelityTooSmall: the recording asks for less than the replay's
	// own process costs (a step too short for its CPU time, or too small
	// for its memory, to be told from that cost).
	FidelityTooSmall    = "too_small"
	FidelityNotRecorded = "not_recorded" // the recording holds no value
	FidelityNotMeasured = "not_measured" // the guest could not read one
)

// Sources of a step's actual use.
const (
	// FidelityCgroup: memory.peak and cpu.stat usage_usec of the step's
	// own cgroup, read after its process exited.
	FidelityCgroup = "cgroup"
	// FidelityProcess: when the step ran without a cgroup of its own,
	// the replay's own count of its peak memory (what its process held
	// before it began plus what it mapped) and its process's user and
	// system time.
	FidelityProcess = "process"
)

// StepFidelity is one replayed step's resource use against its recording
// after scaling.
type StepFidelity struct {
	Source string `json:"source"`
	// Mem is peak memory in bytes against the recorded peak above the
	// call's start times mem_scale.
	Mem Measure `json:"mem_bytes"`
	// CPU is CPU time in microseconds against the recorded CPU time
	// divided by compress.
	CPU Measure `json:"cpu_usec"`
}

// Measure is one resource of one step.
type Measure struct {
	Expected *float64 `json:"expected,omitempty"` // nil: not recorded
	Actual   *float64 `json:"actual,omitempty"`   // nil: not measured
	// Floor is the least the replay could have used: what its own
	// process costs. An expected amount below it is too small to check.
	Floor float64 `json:"floor,omitempty"`
	// Ratio is Actual/Expected when both are known and Expected > 0.
	Ratio   float64 `json:"ratio,omitempty"`
	Verdict string  `json:"verdict"`
}

// Compare classifies actual use against the expected amount. An expected
// amount below floor, the replay's own cost, is too small to check: that
// cost, not the recording, decides what the step uses.
func Compare(expected, actual *float64, floor float64) Measure {
	m := Measure{Expected: expected, Actual: actual, Floor: floor}
	if expected != nil && actual != nil && *expected > 0 {
		m.Ratio = *actual / *expected
	}
	switch {
	case expected == nil:
		m.Verdict = FidelityNotRecorded
	case actual == nil:
		m.Verdict = FidelityNotMeasured
	case *expected < floor || *expected <= 0:
		m.Verdict = FidelityTooSmall
	// the epsilon keeps a ratio of exactly 1.1 or 0.9 (which float
	// division rounds either way) inside
	case math.Abs(m.Ratio-1) <= FidelityTolerance+1e-9:
		m.Verdict = FidelityWithin
	default:
		m.Verdict = FidelityOff
	}
	return m
}

// ReadTraceSteps reads a steps log: its step lines in log order (the order
// steps ended) and its session line (nil if the log has none, as when the
// victim was stopped before it finished).
func ReadTraceSteps(path string) ([]TraceStep, *TraceSession, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var steps []TraceStep
	var sess *TraceSession
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var probe struct {
			Session *string `json:"session"`
		}
		if err := json.Unmarshal(sc.Bytes(), &probe); err != nil {
			return nil, nil, fmt.Errorf("%s:%d: %v", path, line, err)
		}
		if probe.Session != nil {
			sess = new(TraceSession)
			if err := json.Unmarshal(sc.Bytes(), sess); err != nil {
				return nil, nil, fmt.Errorf("%s:%d: %v", path, line, err)
			}
			continue
		}
		var s TraceStep
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return nil, nil, fmt.Errorf("%s:%d: %v", path, line, err)
		}
		steps = append(steps, s)
	}
	return steps, sess, sc.Err()
}
