// Package trace turns recorded agent sessions into compact step lists and
// replays them: each tool call becomes one step with its recorded duration,
// CPU share and memory profile, time compressed by a factor.
package trace

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// FormatVersion of the converted trace JSON.
const FormatVersion = 1

// Trace is one converted agent session.
type Trace struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	// Source and License say where the recording came from; kept with
	// the data because converted traces are derived works.
	Source  string `json:"source"`
	License string `json:"license"`
	// SampleMs is the resource sampling period of the recording.
	SampleMs int64  `json:"sample_ms"`
	Steps    []Step `json:"steps"`
}

// Step is one tool call.
type Step struct {
	Tool string `json:"tool"`
	// StartMs counts from the earliest call's start. Steps are in start
	// order; calls that overlapped in the recording overlap here too.
	StartMs int64 `json:"start_ms"`
	DurMs   int64 `json:"dur_ms"`
	// MemMB[i] is the container memory above what it held just before
	// the call, at evenly spaced points across the call (>= 1 entry).
	MemMB []float64 `json:"mem_mb"`
	// CPUPct[i] is the container's CPU use (percent of one CPU) at the
	// same points.
	CPUPct []float64 `json:"cpu_pct"`
}

// Validate checks internal consistency.
func (t *Trace) Validate() error {
	if t.Version != FormatVersion {
		return fmt.Errorf("trace %q: format version %d, want %d (re-run the converter)", t.Name, t.Version, FormatVersion)
	}
	if len(t.Steps) == 0 {
		return fmt.Errorf("trace %q: no steps", t.Name)
	}
	if s := t.Steps[0].StartMs; s != 0 {
		return fmt.Errorf("trace %q step 0: starts at %d ms; offsets count from the earliest call, so the first step starts at 0 (re-run the converter)", t.Name, s)
	}
	prev := int64(0)
	for i, s := range t.Steps {
		if s.StartMs < prev {
			return fmt.Errorf("trace %q step %d: starts at %d ms, before step %d (%d ms); steps are sorted by start (re-run the converter)", t.Name, i, s.StartMs, i-1, prev)
		}
		prev = s.StartMs
		if s.DurMs < 0 {
			return fmt.Errorf("trace %q step %d: negative duration", t.Name, i)
		}
		if len(s.MemMB) == 0 || len(s.MemMB) != len(s.CPUPct) {
			return fmt.Errorf("trace %q step %d: mem_mb (%d) and cpu_pct (%d) must be equally long and non-empty", t.Name, i, len(s.MemMB), len(s.CPUPct))
		}
	}
	return nil
}

// Concurrency says how a trace's calls overlap.
type Concurrency struct {
	// Overlapping counts calls that ran at the same time as at least one
	// other call.
	Overlapping int
	// MaxParallel is the most calls running at one instant.
	MaxParallel int
	// SpanMs runs from the first call's start to the last call's end.
	SpanMs int64
}

// Concurrency measures the overlap between the trace's calls. Calls
// overlap when each starts before the other ends, so a call starting the
// millisecond another ends follows it rather than overlapping it.
func (t *Trace) Concurrency() Concurrency {
	var c Concurrency
	for i, a := range t.Steps {
		c.SpanMs = max(c.SpanMs, a.StartMs+a.DurMs)
		running := 1
		overlaps := false
		for j, b := range t.Steps {
			if i == j || a.DurMs == 0 || b.DurMs == 0 {
				continue
			}
			if a.StartMs < b.StartMs+b.DurMs && b.StartMs < a.StartMs+a.DurMs {
				overlaps = true
			}
			// running at a's start: b started no later (ties by order)
			// and had not yet ended
			if (b.StartMs < a.StartMs || (b.StartMs == a.StartMs && j < i)) && b.StartMs+b.DurMs > a.StartMs {
				running++
			}
		}
		if overlaps {
			c.Overlapping++
		}
		c.MaxParallel = max(c.MaxParallel, running)
	}
	return c
}

// Read loads a converted trace. name is a path to a .json file, or a bare
// name looked up in dirs as <name>.json.
func Read(name string, dirs ...string) (*Trace, error) {
	path := name
	if !strings.ContainsRune(name, '/') && !strings.HasSuffix(name, ".json") {
		path = ""
		for _, d := range dirs {
			p := filepath.Join(d, name+".json")
			if _, err := os.Stat(p); err == nil {
				path = p
				break
			}
		}
		if path == "" {
			return nil, fmt.Errorf("trace %q: not found in %s (convert one with `agentwork trace-convert`)", name, strings.Join(dirs, ", "))
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	var t Trace
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("trace %s: %v", path, err)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &t, nil
}
