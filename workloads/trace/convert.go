package trace

import (
	"encoding/json"
	"fmt"
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
func Convert(dir, name, source, license string) (*Trace, error) {
	var calls []rawCall
	if err := readJSON(filepath.Join(dir, "tool_calls.json"), &calls); err != nil {
		return nil, err
	}
	var res struct {
		Samples []rawSample `json:"samples"`
	}
	if err := readJSON(filepath.Join(dir, "resources.json"), &res); err != nil {
		return nil, err
	}
	var ss []sample
	for i, r := range res.Samples {
		m, err := parseMemUsage(r.MemUsage)
		if err != nil {
			return nil, fmt.Errorf("%s: resources.json sample %d: %v", dir, i, err)
		}
		c, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(r.CPUPercent), "%"), 64)
		if err != nil {
			return nil, fmt.Errorf("%s: resources.json sample %d cpu_percent %q: %v", dir, i, r.CPUPercent, err)
		}
		ss = append(ss, sample{t: r.Epoch, mem: m, cpu: c})
	}
	if len(ss) == 0 {
		return nil, fmt.Errorf("%s: resources.json has no samples", dir)
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].t < ss[j].t })
	period := 1.0
	if len(ss) > 1 {
		period = (ss[len(ss)-1].t - ss[0].t) / float64(len(ss)-1)
	}

	t := &Trace{Version: FormatVersion, Name: name, Source: source, License: license, SampleMs: int64(math.Round(period * 1000))}
	var t0 float64
	for i, c := range calls {
		st, err := parseTime(c.Timestamp)
		if err != nil {
			return nil, fmt.Errorf("%s: tool_calls.json call %d timestamp: %v", dir, i, err)
		}
		en := st
		if c.EndTimestamp != "" {
			if en, err = parseTime(c.EndTimestamp); err != nil {
				return nil, fmt.Errorf("%s: tool_calls.json call %d end_timestamp: %v", dir, i, err)
			}
		}
		if en < st {
			en = st
		}
		if i == 0 {
			t0 = st
		}
		step := Step{
			Tool:    c.Tool,
			StartMs: int64(math.Round((st - t0) * 1000)),
			DurMs:   int64(math.Round((en - st) * 1000)),
		}
		base := before(ss, st)
		// A sample describes the period ending at it, so the call's
		// samples are those after its start up to one period past its end.
		for _, s := range ss {
			if s.t > st && s.t <= en+period {
				step.MemMB = append(step.MemMB, round1(math.Max(0, s.mem-base.mem)))
				step.CPUPct = append(step.CPUPct, round1(s.cpu))
			}
		}
		if len(step.MemMB) == 0 {
			n := after(ss, st)
			step.MemMB = []float64{round1(math.Max(0, n.mem-base.mem))}
			step.CPUPct = []float64{round1(n.cpu)}
		}
		t.Steps = append(t.Steps, step)
	}
	if len(t.Steps) == 0 {
		return nil, fmt.Errorf("%s: tool_calls.json has no calls", dir)
	}
	sort.SliceStable(t.Steps, func(i, j int) bool { return t.Steps[i].StartMs < t.Steps[j].StartMs })
	return t, t.Validate()
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

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("trace convert: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("trace convert: %s: %v", path, err)
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
