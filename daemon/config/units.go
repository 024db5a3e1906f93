package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ByteSize is a byte count written as an integer or with a binary suffix
// ("512MiB", "2GiB", "64K"), or "max" for no limit.
type ByteSize uint64

// Unlimited is "max".
const Unlimited = ByteSize(^uint64(0))

var byteUnits = []struct {
	suffix string
	mul    uint64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1},
}

// UnmarshalText parses a size; errors say what is accepted.
func (b *ByteSize) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	if s == "max" {
		*b = Unlimited
		return nil
	}
	mul := uint64(1)
	num := s
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			mul, num = u.mul, strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			break
		}
	}
	v, err := strconv.ParseUint(num, 10, 64)
	if err != nil || (mul > 1 && v > ^uint64(0)/mul) {
		return fmt.Errorf("size %q: write a whole number of bytes with an optional unit (K, M, G, T, KiB, MiB, GiB, TiB), e.g. \"512MiB\", or \"max\"", s)
	}
	*b = ByteSize(v * mul)
	return nil
}

func (b ByteSize) String() string {
	if b == Unlimited {
		return "max"
	}
	return strconv.FormatUint(uint64(b), 10)
}

// Duration is a Go duration string ("250ms", "2s").
type Duration time.Duration

// UnmarshalText parses a duration; errors say what is accepted.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(text)))
	if err != nil || v < 0 {
		return fmt.Errorf("duration %q: write a non-negative duration with a unit, e.g. \"250ms\" or \"2s\"", string(text))
	}
	*d = Duration(v)
	return nil
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
