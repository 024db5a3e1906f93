package cgroupfs

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// ParseFlatKeyed parses a flat-keyed file ("key value" per line, value an
// unsigned integer): memory.events, memory.stat, cpu.stat, pids.events.
// name is used only in error messages.
func ParseFlatKeyed(name string, r io.Reader) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 2 {
			return nil, fmt.Errorf("cgroupfs: %s line %d: want \"key value\", got %q", name, line, text)
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("cgroupfs: %s line %d: value of %q is not an unsigned integer: %q", name, line, f[0], f[1])
		}
		out[f[0]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cgroupfs: read %s: %w", name, err)
	}
	return out, nil
}

// ParseNestedKeyed parses a nested-keyed file ("key sub=value sub=value ..."
// per line): memory.pressure, cpu.pressure, io.stat. Values stay strings
// because their types differ (avg10=0.00, total=123, rbytes=...).
func ParseNestedKeyed(name string, r io.Reader) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		m := map[string]string{}
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("cgroupfs: %s line %d: want \"sub=value\" after %q, got %q", name, line, f[0], kv)
			}
			m[k] = v
		}
		out[f[0]] = m
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cgroupfs: read %s: %w", name, err)
	}
	return out, nil
}

// PressureLine is one line of a PSI file.
type PressureLine struct {
	Avg10, Avg60, Avg300 float64 // percent of wall time stalled
	Total                time.Duration
}

// Pressure is a parsed PSI file (memory.pressure, cpu.pressure, io.pressure).
// Full is zero for cpu.pressure at the root, which has no "full" line.
type Pressure struct {
	Some, Full PressureLine
}

// ParsePressure parses a PSI file's content.
func ParsePressure(name string, r io.Reader) (Pressure, error) {
	nk, err := ParseNestedKeyed(name, r)
	if err != nil {
		return Pressure{}, err
	}
	var p Pressure
	some, ok := nk["some"]
	if !ok {
		return Pressure{}, fmt.Errorf("cgroupfs: %s: no \"some\" line; is this a PSI file?", name)
	}
	if p.Some, err = pressureLine(name, "some", some); err != nil {
		return Pressure{}, err
	}
	if full, ok := nk["full"]; ok {
		if p.Full, err = pressureLine(name, "full", full); err != nil {
			return Pressure{}, err
		}
	}
	return p, nil
}

func pressureLine(name, which string, m map[string]string) (PressureLine, error) {
	var l PressureLine
	for _, k := range []string{"avg10", "avg60", "avg300", "total"} {
		s, ok := m[k]
		if !ok {
			return l, fmt.Errorf("cgroupfs: %s: %q line has no %s=", name, which, k)
		}
		if k == "total" {
			us, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return l, fmt.Errorf("cgroupfs: %s: %s total=%q is not an integer", name, which, s)
			}
			l.Total = time.Duration(us) * time.Microsecond
			continue
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return l, fmt.Errorf("cgroupfs: %s: %s %s=%q is not a number", name, which, k, s)
		}
		switch k {
		case "avg10":
			l.Avg10 = v
		case "avg60":
			l.Avg60 = v
		case "avg300":
			l.Avg300 = v
		}
	}
	return l, nil
}

// FlatKeyed reads and parses a flat-keyed knob of this cgroup.
func (c Cgroup) FlatKeyed(knob string) (map[string]uint64, error) {
	s, err := c.Read(knob)
	if err != nil {
		return nil, err
	}
	return ParseFlatKeyed(c.file(knob), strings.NewReader(s))
}

// NestedKeyed reads and parses a nested-keyed knob of this cgroup.
func (c Cgroup) NestedKeyed(knob string) (map[string]map[string]string, error) {
	s, err := c.Read(knob)
	if err != nil {
		return nil, err
	}
	return ParseNestedKeyed(c.file(knob), strings.NewReader(s))
}

// Pressure reads and parses a PSI knob (memory.pressure, cpu.pressure, io.pressure).
func (c Cgroup) Pressure(knob string) (Pressure, error) {
	s, err := c.Read(knob)
	if err != nil {
		return Pressure{}, err
	}
	return ParsePressure(c.file(knob), strings.NewReader(s))
}

// Events is cgroup.events.
type Events struct {
	Populated, Frozen bool
}

// Events reads cgroup.events.
func (c Cgroup) Events() (Events, error) {
	m, err := c.FlatKeyed("cgroup.events")
	if err != nil {
		return Events{}, err
	}
	return Events{Populated: m["populated"] != 0, Frozen: m["frozen"] != 0}, nil
}
