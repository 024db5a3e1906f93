package scenario

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/internal/tomlval"
)

// The field types below accept any TOML value and remember what was wrong
// with it instead of failing: the TOML decoder stops at the first type
// mismatch, and validation must report every problem in one pass.

// field is the bookkeeping every lenient value carries.
type field struct {
	set bool
	bad string // why the value was rejected; "" when it is fine
}

func (f field) isSet() bool     { return f.set }
func (f field) problem() string { return f.bad }

// Int is a TOML integer.
type Int struct {
	field
	V int64
}

func (x *Int) UnmarshalTOML(v any) error {
	x.set = true
	n, ok := v.(int64)
	if !ok {
		x.bad = fmt.Sprintf("want an integer, got %s", tomlval.Describe(v))
	}
	x.V = n
	return nil
}

// Float is a TOML number (integer or float).
type Float struct {
	field
	V float64
}

func (x *Float) UnmarshalTOML(v any) error {
	x.set = true
	switch n := v.(type) {
	case int64:
		x.V = float64(n)
	case float64:
		x.V = n
	default:
		x.bad = fmt.Sprintf("want a number, got %s", tomlval.Describe(v))
	}
	return nil
}

// Bool is a TOML boolean.
type Bool struct {
	field
	V bool
}

func (x *Bool) UnmarshalTOML(v any) error {
	x.set = true
	b, ok := v.(bool)
	if !ok {
		x.bad = fmt.Sprintf("want true or false, got %s", tomlval.Describe(v))
	}
	x.V = b
	return nil
}

// Str is a TOML string.
type Str struct {
	field
	V string
}

func (x *Str) UnmarshalTOML(v any) error {
	x.set = true
	s, ok := v.(string)
	if !ok {
		x.bad = fmt.Sprintf("want a string, got %s", tomlval.Describe(v))
	}
	x.V = s
	return nil
}

// StrList is a TOML array of strings.
type StrList struct {
	field
	V []string
}

func (x *StrList) UnmarshalTOML(v any) error {
	x.set = true
	arr, ok := v.([]any)
	if !ok {
		x.bad = fmt.Sprintf("want an array of strings, got %s", tomlval.Describe(v))
		return nil
	}
	for _, e := range arr {
		s, ok := e.(string)
		if !ok {
			x.bad = fmt.Sprintf("want an array of strings, found element %s", tomlval.Describe(e))
			return nil
		}
		x.V = append(x.V, s)
	}
	return nil
}

// Size is a byte count: an integer number of bytes or a string with a binary
// suffix ("512K", "64M", "1G", "1GiB"). Max is true for the string "max".
type Size struct {
	field
	V   int64
	Max bool
}

func (x *Size) UnmarshalTOML(v any) error {
	x.set = true
	switch s := v.(type) {
	case int64:
		if s < 0 {
			x.bad = fmt.Sprintf("size %d is negative", s)
		}
		x.V = s
	case string:
		if s == "max" {
			x.Max = true
			return nil
		}
		n, err := ParseSize(s)
		if err != nil {
			x.bad = err.Error()
		}
		x.V = n
	default:
		x.bad = fmt.Sprintf(`want a size such as "256M" or a byte count, got %s`, tomlval.Describe(v))
	}
	return nil
}

// ParseSize reads "123", "64K", "256M", "1G", "2T" (binary units; an optional
// "i", "iB" or "B" after the letter is accepted).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	for _, suf := range []string{"iB", "B", "i"} {
		if len(t) > len(suf)+1 && strings.HasSuffix(t, suf) {
			t = strings.TrimSuffix(t, suf)
			break
		}
	}
	mul := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'k', 'K':
			mul = 1 << 10
		case 'm', 'M':
			mul = 1 << 20
		case 'g', 'G':
			mul = 1 << 30
		case 't', 'T':
			mul = 1 << 40
		}
		if mul != 1 {
			t = t[:len(t)-1]
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf(`bad size %q: write a byte count or a number with K, M, G or T, e.g. "256M"`, s)
	}
	return int64(f * float64(mul)), nil
}

// Dur is a Go duration string ("500ms", "20s", "2m").
type Dur struct {
	field
	V time.Duration
}

func (x *Dur) UnmarshalTOML(v any) error {
	x.set = true
	s, ok := v.(string)
	if !ok {
		x.bad = fmt.Sprintf(`want a duration string such as "10s", got %s`, tomlval.Describe(v))
		return nil
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		x.bad = fmt.Sprintf(`bad duration %q: write a number with a unit, e.g. "500ms", "10s", "2m"`, s)
	case d < 0:
		x.bad = fmt.Sprintf("duration %q is negative", s)
	}
	x.V = d
	return nil
}
