package scenario

import (
	"fmt"
	"strconv"
	"time"

	"github.com/agentcgroup/agentcgroup/internal/tomlval"
	"github.com/agentcgroup/agentcgroup/internal/units"
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

// Size is a byte count: an integer number of bytes or a string in any form
// internal/units reads ("512K", "64M", "1.5G", "1GiB"). Max is true for the
// string "max", and V is then 0.
type Size struct {
	field
	V   int64
	Max bool
}

func (x *Size) UnmarshalTOML(v any) error {
	x.set = true
	var text string
	switch s := v.(type) {
	case int64:
		text = strconv.FormatInt(s, 10)
	case string:
		text = s
	default:
		x.bad = fmt.Sprintf(`want a size such as "256M" or a byte count, got %s`, tomlval.Describe(v))
		return nil
	}
	b, err := units.ParseBytes(text)
	switch {
	case err != nil:
		x.bad = err.Error()
	case b == units.Max:
		x.Max = true
	default:
		x.V = int64(b)
	}
	return nil
}

// Dur is a duration string ("500ms", "20s", "2m") as internal/units reads
// it; never negative.
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
	d, err := units.ParseDuration(s)
	if err != nil {
		x.bad = err.Error()
	}
	x.V = d.D()
	return nil
}
