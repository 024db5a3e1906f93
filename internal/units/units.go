// Package units owns the project's two units, byte counts and durations:
// one type and one parser for each, and the encodings every scenario,
// trial spec, policy file and workload flag reads them through (text for
// TOML and flags, JSON for specs and results, flag.Value).
//
// # Bytes
//
// A Bytes is a count of bytes. ParseBytes, and with it every decoder of a
// Bytes, accepts:
//
//   - a whole number of bytes: "4096", also with a "B": "4096B"
//   - a number with a binary unit K, M, G or T, in either case, optionally
//     followed by "i", "iB" or "B": "64K", "64k", "256M", "256Mi",
//     "256MiB", "256MB", "2T". Every unit is a power of 1024, "1MB"
//     included, as cgroup limits are counted in pages.
//   - a fraction or an exponent in the number: "1.5G", ".5M", "1e3K"; the
//     value is cut to whole bytes ("0.1K" is 102)
//   - a "+" before the number, blanks around the text and between the
//     number and the unit: " 512 MiB "
//   - "max": no limit, the value Max
//
// It refuses an empty text, a negative number, any other unit ("1E",
// "64kb", "64 bytes"), hexadecimal, "inf" and "nan", and values above Max.
//
// Max is the largest int64, so as a number it lies above every real
// limit and comparisons need no special case. Every encoding writes it
// as "max"; a consumer for which no limit means nothing (a guest's
// memory, a workload's working set) refuses it by comparing with Max.
//
// The text encoding (TOML, flags) writes the decimal byte count and reads
// every form above. JSON writes an integer and reads an integer or any of
// the forms above as a string; an integer is taken as it is, negative
// ones too, since the spec's validation names the field that is wrong.
//
// # Durations
//
// A Duration is a span of time. ParseDuration, and with it the text
// encoding (TOML, flags), accepts Go's duration syntax: one or more
// decimal numbers, each with an optional fraction and a unit ns, us (or
// µs, μs), ms, s, m or h: "250ms", "1.5s", "1h30m"; "0" alone; a "+" in
// front and blanks around the text. It refuses a number without a unit
// ("100"), other units ("2d"), negative durations, and spans beyond about
// 292 years.
//
// JSON writes Go's string ("1.5s") and reads it back, a negative one too
// (results record measured spans, which a run cancelled before its
// delayed start makes negative; a spec's validation names a negative
// field itself), or an integer number of nanoseconds.
//
// # Errors
//
// Every refusal names the text and shows a form that works:
//
//	bad size "64Q": want a number of bytes with an optional unit K, M, G or T (powers of 1024), e.g. "64M" or "1.5G"
//	bad size "-1M": negative; write e.g. "64M"
//	bad size "9999999T": above 8 EiB; write "max" for no limit
//	bad duration "soon": want a number with a unit ns, us, ms, s, m or h, e.g. "250ms", "1.5s" or "1m30s"
//	bad duration "-1s": negative; write e.g. "250ms"
package units

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Bytes is a byte count.
type Bytes int64

// Max is "max": no limit.
const Max Bytes = math.MaxInt64

// binaryUnit is the multiplier of each unit letter.
var binaryUnit = map[byte]int64{
	'k': 1 << 10, 'K': 1 << 10,
	'm': 1 << 20, 'M': 1 << 20,
	'g': 1 << 30, 'G': 1 << 30,
	't': 1 << 40, 'T': 1 << 40,
}

func badSize(s string) error {
	return fmt.Errorf(`bad size %q: want a number of bytes with an optional unit K, M, G or T (powers of 1024), e.g. "64M" or "1.5G"`, s)
}

// ParseBytes reads a byte count in any of the forms the package comment
// lists; "max" gives Max.
func ParseBytes(s string) (Bytes, error) {
	t := strings.TrimSpace(s)
	if t == "max" {
		return Max, nil
	}
	neg := strings.HasPrefix(t, "-")
	if neg || strings.HasPrefix(t, "+") {
		t = t[1:]
	}
	num, whole := scanNumber(t)
	if num == "" {
		return 0, badSize(s)
	}
	mul, ok := unitOf(strings.TrimLeft(t[len(num):], " \t"))
	if !ok {
		return 0, badSize(s)
	}
	if neg {
		return 0, fmt.Errorf(`bad size %q: negative; write e.g. "64M"`, s)
	}
	tooLarge := fmt.Errorf(`bad size %q: above 8 EiB; write "max" for no limit`, s)
	if whole {
		v, err := strconv.ParseInt(num, 10, 64)
		if err != nil || v > math.MaxInt64/mul {
			return 0, tooLarge
		}
		return Bytes(v * mul), nil
	}
	f, err := strconv.ParseFloat(num, 64)
	f *= float64(mul)
	if err != nil || f >= math.MaxInt64 {
		return 0, tooLarge
	}
	return Bytes(f), nil
}

// scanNumber returns the decimal number t starts with (digits, an
// optional fraction, an optional exponent) and whether it is a whole
// number written with digits only; "" when t does not start with one.
func scanNumber(t string) (num string, whole bool) {
	i, digits := 0, 0
	for i < len(t) && isDigit(t[i]) {
		i, digits = i+1, digits+1
	}
	whole = true
	if i < len(t) && t[i] == '.' {
		whole = false
		i++
		for i < len(t) && isDigit(t[i]) {
			i, digits = i+1, digits+1
		}
	}
	if digits == 0 {
		return "", false
	}
	// An exponent needs a digit, so that "1E" stays a (refused) unit.
	if i < len(t) && (t[i] == 'e' || t[i] == 'E') {
		j := i + 1
		if j < len(t) && (t[j] == '+' || t[j] == '-') {
			j++
		}
		if j < len(t) && isDigit(t[j]) {
			for j < len(t) && isDigit(t[j]) {
				j++
			}
			i, whole = j, false
		}
	}
	return t[:i], whole
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// unitOf is the multiplier the text after the number names.
func unitOf(u string) (int64, bool) {
	switch u {
	case "", "B":
		return 1, true
	}
	mul, ok := binaryUnit[u[0]]
	if !ok {
		return 0, false
	}
	switch u[1:] {
	case "", "i", "iB", "B":
		return mul, true
	}
	return 0, false
}

// String is the decimal byte count, or "max".
func (b Bytes) String() string {
	if b == Max {
		return "max"
	}
	return strconv.FormatInt(int64(b), 10)
}

// MarshalText writes what String does, which UnmarshalText reads back.
func (b Bytes) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText reads any form ParseBytes accepts.
func (b *Bytes) UnmarshalText(text []byte) error {
	v, err := ParseBytes(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Set makes a *Bytes a flag.Value.
func (b *Bytes) Set(s string) error { return b.UnmarshalText([]byte(s)) }

// MarshalJSON writes an integer, or "max" for Max.
func (b Bytes) MarshalJSON() ([]byte, error) {
	if b == Max {
		return []byte(`"max"`), nil
	}
	return strconv.AppendInt(nil, int64(b), 10), nil
}

// UnmarshalJSON reads an integer as it is, or a string in any form
// ParseBytes accepts; null leaves the value alone.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var n int64
	if err := json.Unmarshal(data, &n); err == nil {
		*b = Bytes(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf(`bad size %s: want an integer number of bytes or a string such as "64M"`, data)
	}
	return b.UnmarshalText([]byte(s))
}

// Duration is a span of time.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String is Go's form, "1.5s".
func (d Duration) String() string { return time.Duration(d).String() }

// ParseDuration reads a non-negative duration in Go's syntax.
func ParseDuration(s string) (Duration, error) { return parseDuration(s, false) }

// parseDuration is the one duration parser; signed admits the negative
// spans JSON may hold.
func parseDuration(s string, signed bool) (Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf(`bad duration %q: want a number with a unit ns, us, ms, s, m or h, e.g. "250ms", "1.5s" or "1m30s"`, s)
	}
	if v < 0 && !signed {
		return 0, fmt.Errorf(`bad duration %q: negative; write e.g. "250ms"`, s)
	}
	return Duration(v), nil
}

// MarshalText writes what String does, which UnmarshalText reads back.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads what ParseDuration accepts.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Set makes a *Duration a flag.Value.
func (d *Duration) Set(s string) error { return d.UnmarshalText([]byte(s)) }

// MarshalJSON writes Go's string, "1.5s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a Go duration string, negative ones too, or
// integer nanoseconds; null leaves the value alone.
func (d *Duration) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		v, err := parseDuration(s, true)
		if err != nil {
			return err
		}
		*d = v
		return nil
	}
	var n int64
	if err := json.Unmarshal(data, &n); err != nil {
		return fmt.Errorf(`bad duration %s: want a string such as "250ms" or integer nanoseconds`, data)
	}
	*d = Duration(n)
	return nil
}
