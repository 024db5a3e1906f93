package trial

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseFlatKeyed reads "key value" lines (memory.events, memory.stat,
// cpu.stat, /proc/vmstat).
func ParseFlatKeyed(s string) (map[string]int64, error) {
	out := map[string]int64{}
	for i, ln := range strings.Split(s, "\n") {
		f := strings.Fields(ln)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return out, fmt.Errorf("line %d %q: want \"key value\"", i+1, ln)
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return out, fmt.Errorf("line %d %q: %v", i+1, ln, err)
		}
		out[f[0]] = v
	}
	return out, nil
}

// PSI is one line of a pressure file.
type PSI struct {
	Avg10, Avg60, Avg300 float64
	TotalUS              int64
}

// Pressure is a parsed *.pressure file; Full is zero where the kernel
// reports none.
type Pressure struct {
	Some, Full PSI
}

// ParsePressure reads "some avg10=.. avg60=.. avg300=.. total=.." lines.
func ParsePressure(s string) (Pressure, error) {
	var p Pressure
	for _, ln := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(ln)
		if len(f) == 0 {
			continue
		}
		var dst *PSI
		switch f[0] {
		case "some":
			dst = &p.Some
		case "full":
			dst = &p.Full
		default:
			return p, fmt.Errorf("pressure line %q: want some/full", ln)
		}
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return p, fmt.Errorf("pressure field %q: want key=value", kv)
			}
			var err error
			switch k {
			case "avg10":
				dst.Avg10, err = strconv.ParseFloat(v, 64)
			case "avg60":
				dst.Avg60, err = strconv.ParseFloat(v, 64)
			case "avg300":
				dst.Avg300, err = strconv.ParseFloat(v, 64)
			case "total":
				dst.TotalUS, err = strconv.ParseInt(v, 10, 64)
			}
			if err != nil {
				return p, fmt.Errorf("pressure field %q: %v", kv, err)
			}
		}
	}
	return p, nil
}
