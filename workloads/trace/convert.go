package trace

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// recorded tool_calls.json entry (only the fields we use; inputs and
// results are dropped on purpose: they hold arbitrary repository text).
type rawCall struct {
	Timestamp    string `json:"timestamp"`
	EndTimestamp string `json:"end_timestamp"`
	Tool         string `json:"tool"`
}

type rawSample struct {
	Epoch      float64 `json:"epoch"`
	MemUsage   string  `json:"mem_usage"`
	CPUPercent string  `json:"cpu_percent"`
}

type sample struct {
	t   float64 // epoch seconds
	mem float64 // MB
	cpu float64 // percent of one CPU
}

// Convert reads a recorded task directory (tool_calls.json and
// resources.json) and returns its step list. Memory is taken relative to
// the sample just before each call, so the agent's own resident memory is
// not charged to every tool call.
//
// Agents issue tool calls in parallel and tool_calls.json lists them as
// they complete, so time zero is the earliest start of any call and the
// steps are sorted by start; overlapping calls keep their overlap.
func Convert(dir, name, source, license string) (*Trace, error) {
	t, _, err := convert(dir, name, source, license)
	return t, err
}

// Recording is the outcome of converting one recorded session.
type Recording struct {
	Name  string
	Dir   string
	Trace *Trace // nil when rejected
	Err   error  // why it was rejected
	// Reordered counts calls listed after a call that started later than
	// they did (the recording lists calls in completion order).
	Reordered int
}

// ConvertDir converts every recording in dir: each subdirectory is one
// recorded session named after the subdirectory. source(name) says where
// that recording came from. A rejected recording has Err set and does not
// stop the others.
func ConvertDir(dir string, source func(name string) string, license string) ([]Recording, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("trace convert: %w", err)
	}
	var out []Recording
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		r := Recording{Name: e.Name(), Dir: filepath.Join(dir, e.Name())}
		r.Trace, r.Reordered, r.Err = convert(r.Dir, r.Name, source(r.Name), license)
		if r.Err != nil {
			r.Trace = nil
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("trace convert: %s holds no recording directories (each needs tool_calls.json and resources.json)", dir)
	}
	return out, nil
}

// call is one parsed tool_calls.json entry.
type call struct {
	tool   string
	st, en float64
}

func convert(dir, name, source, license string) (*Trace, int, error) {
	var raw []rawCall
	if err := readJSON(dir, "tool_calls.json", &raw); err != nil {
		return nil, 0, err
	}
	var res struct {
		Samples []rawSample `json:"samples"`
	}
	if err := readJSON(dir, "resources.json", &res); err != nil {
		return nil, 0, err
	}
	var ss []sample
	for i, r := range res.Samples {
		m, err := parseMemUsage(r.MemUsage)
		if err != nil {
			return nil, 0, fmt.Errorf("recording %s: resources.json sample %d: %v", dir, i, err)
		}
		c, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(r.CPUPercent), "%"), 64)
		if err != nil {
			return nil, 0, fmt.Errorf("recording %s: resources.json sample %d cpu_percent %q: %v", dir, i, r.CPUPercent, err)
		}
		ss = append(ss, sample{t: r.Epoch, mem: m, cpu: c})
	}
	if len(ss) == 0 {
		return nil, 0, fmt.Errorf("recording %s: resources.json has no samples", dir)
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].t < ss[j].t })
	period := 1.0
	if len(ss) > 1 {
		period = (ss[len(ss)-1].t - ss[0].t) / float64(len(ss)-1)
	}

	calls, err := parseCalls(dir, raw)
	if err != nil {
		return nil, 0, err
	}
	reordered := 0
	latest := math.Inf(-1)
	t0 := math.Inf(1)
	for _, c := range calls {
		if c.st < latest {
			reordered++
		}
		latest = math.Max(latest, c.st)
		t0 = math.Min(t0, c.st)
	}
	// Start order; a call that ends first goes first among equal starts,
	// and the recording's own order breaks what remains.
	sort.SliceStable(calls, func(i, j int) bool {
		a, b := calls[i], calls[j]
		if a.st != b.st {
			return a.st < b.st
		}
		return a.en < b.en
	})

	t := &Trace{Version: FormatVersion, Name: name, Source: source, License: license, SampleMs: int64(math.Round(period * 1000))}
	for _, c := range calls {
		step := Step{
			Tool:    c.tool,
			StartMs: int64(math.Round((c.st - t0) * 1000)),
			DurMs:   int64(math.Round((c.en - c.st) * 1000)),
		}
		base := before(ss, c.st)
		// A sample describes the period ending at it, so the call's
		// samples are those after its start up to one period past its end.
		for _, s := range ss {
			if s.t > c.st && s.t <= c.en+period {
				step.MemMB = append(step.MemMB, round1(math.Max(0, s.mem-base.mem)))
				step.CPUPct = append(step.CPUPct, round1(s.cpu))
			}
		}
		if len(step.MemMB) == 0 {
			n := after(ss, c.st)
			step.MemMB = []float64{round1(math.Max(0, n.mem-base.mem))}
			step.CPUPct = []float64{round1(n.cpu)}
		}
		t.Steps = append(t.Steps, step)
	}
	return t, reordered, t.Validate()
}

// parseCalls checks every call and returns them in the recording's order.
// Only data that cannot describe a call is rejected: a missing or
// unparsable time, an end before the start, a missing tool name.
func parseCalls(dir string, raw []rawCall) ([]call, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("recording %s: tool_calls.json has no calls; record a session with at least one tool call or leave this directory out", dir)
	}
	var out []call
	for i, r := range raw {
		where := fmt.Sprintf("recording %s: tool_calls.json call %d", dir, i)
		if r.Tool != "" {
			where += fmt.Sprintf(" (%s)", r.Tool)
		}
		if r.Timestamp == "" {
			return nil, fmt.Errorf("%s: no timestamp; every call needs its start as RFC 3339 UTC, e.g. \"2026-02-07T11:13:26.992Z\"; add it or remove the call", where)
		}
		st, err := parseTime(r.Timestamp)
		if err != nil {
			return nil, fmt.Errorf("%s: timestamp %q is not an RFC 3339 time (%v); write it like \"2026-02-07T11:13:26.992Z\"", where, r.Timestamp, err)
		}
		if r.EndTimestamp == "" {
			return nil, fmt.Errorf("%s started %s: no end_timestamp, so its duration is unknown; add the time it returned, or remove the call if it never finished", where, r.Timestamp)
		}
		en, err := parseTime(r.EndTimestamp)
		if err != nil {
			return nil, fmt.Errorf("%s: end_timestamp %q is not an RFC 3339 time (%v); write it like \"2026-02-07T11:13:27.767Z\"", where, r.EndTimestamp, err)
		}
		if en < st {
			return nil, fmt.Errorf("%s: ends %s, %.0f ms before it starts (%s): negative duration; the two times are swapped or from different clocks, correct them or remove the call", where, r.EndTimestamp, (st-en)*1000, r.Timestamp)
		}
		if r.Tool == "" {
			return nil, fmt.Errorf("%s started %s: no tool name; set \"tool\" (Bash, Read, ...) or remove the call", where, r.Timestamp)
		}
		out = append(out, call{tool: r.Tool, st: st, en: en})
	}
	return out, nil
}

func before(ss []sample, t float64) sample {
	b := ss[0]
	for _, s := range ss {
		if s.t > t {
			break
		}
		b = s
	}
	return b
}

func after(ss []sample, t float64) sample {
	for _, s := range ss {
		if s.t >= t {
			return s
		}
	}
	return ss[len(ss)-1]
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

func readJSON(dir, file string, v any) error {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("recording %s: no %s; a recording directory holds tool_calls.json and resources.json", dir, file)
	}
	if err != nil {
		return fmt.Errorf("recording %s: %w", dir, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("recording %s: %s: %v", dir, file, err)
	}
	return nil
}

func parseTime(s string) (float64, error) {
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, err
	}
	return float64(tm.UnixNano()) / 1e9, nil
}

var memRE = regexp.MustCompile(`^\s*([0-9.]+)\s*([KMGT]?i?B)\s*$`)

// parseMemUsage reads docker-stats style "185.7MB / 134.5GB" and returns
// the used part in MB (decimal units, as docker prints them; binary
// suffixes are converted too).
func parseMemUsage(s string) (float64, error) {
	used, _, _ := strings.Cut(s, "/")
	m := memRE.FindStringSubmatch(used)
	if m == nil {
		return 0, fmt.Errorf("mem_usage %q: want e.g. \"185.7MB / 134.5GB\"", s)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("mem_usage %q: %v", s, err)
	}
	mul := map[string]float64{
		"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3, "TB": 1e6,
		"KiB": 1024.0 / 1e6, "MiB": 1048576.0 / 1e6, "GiB": 1073741824.0 / 1e6, "TiB": 1099511627776.0 / 1e6,
	}[m[2]]
	if mul == 0 {
		return 0, fmt.Errorf("mem_usage %q: unknown unit %q", s, m[2])
	}
	return v * mul, nil
}
