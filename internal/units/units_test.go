package units_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/agentcgroup/agentcgroup/internal/units"
)

// Every form a scenario, spec, policy file or flag used before the
// package existed, and the ones the package comment adds.
var goodBytes = []struct {
	in   string
	want units.Bytes
}{
	{"0", 0},
	{"1", 1},
	{"4096", 4096},
	{"4096B", 4096},
	{"+4096", 4096},
	{"64K", 64 << 10},
	{"64k", 64 << 10},
	{"64Ki", 64 << 10},
	{"64KiB", 64 << 10},
	{"64KB", 64 << 10},
	{"256M", 256 << 20},
	{"256m", 256 << 20},
	{"256Mi", 256 << 20},
	{"256MiB", 256 << 20},
	{"3MB", 3 << 20},
	{"1G", 1 << 30},
	{"1g", 1 << 30},
	{"2GiB", 2 << 30},
	{"2GB", 2 << 30},
	{"2T", 2 << 40},
	{"2t", 2 << 40},
	{"2TiB", 2 << 40},
	{"1.5G", 3 << 29},
	{".5M", 512 << 10},
	{"1.M", 1 << 20},
	{"0.1K", 102},
	{"5.9", 5},
	{"1e3", 1000},
	{"1e3K", 1000 << 10},
	{"2.5e-1K", 256},
	{"1E2", 100},
	{" 512 MiB ", 512 << 20},
	{"512\tM", 512 << 20},
	{"1 M", 1 << 20},
	{"max", units.Max},
	{" max ", units.Max},
	{"8388607T", 8388607 << 40},
	{"9223372036854775806", units.Max - 1},
	{"9223372036854775807", units.Max},
	{"8.5e9G", 9126805504000000000},
}

var badBytes = []struct {
	in, msg string
}{
	{"", `bad size "": want a number of bytes`},
	{"   ", `bad size "   "`},
	{"M", `bad size "M"`},
	{"B", `bad size "B"`},
	{"-1", `bad size "-1": negative; write e.g. "64M"`},
	{"-1M", `bad size "-1M": negative`},
	{"-0", `bad size "-0": negative`},
	{"--1", `bad size "--1": want`},
	{"+-1", `bad size "+-1": want`},
	{"12X", `bad size "12X"`},
	{"64Q", `bad size "64Q": want a number of bytes with an optional unit K, M, G or T (powers of 1024), e.g. "64M" or "1.5G"`},
	{"1E", `bad size "1E"`},
	{"1P", `bad size "1P"`},
	{"64kb", `bad size "64kb"`},
	{"64Mib", `bad size "64Mib"`},
	{"64 bytes", `bad size "64 bytes"`},
	{"64 M iB", `bad size "64 M iB"`},
	{"64iB", `bad size "64iB"`},
	{"64i", `bad size "64i"`},
	{"M64", `bad size "M64"`},
	{"12 parsecs", `bad size "12 parsecs"`},
	{"one", `bad size "one"`},
	{"0x10", `bad size "0x10"`},
	{"1_000", `bad size "1_000"`},
	{"inf", `bad size "inf"`},
	{"NaN", `bad size "NaN"`},
	{".", `bad size "."`},
	{"1e", `bad size "1e"`},
	{"Max", `bad size "Max"`},
	{"max M", `bad size "max M"`},
	{"9223372036854775808", `bad size "9223372036854775808": above 8 EiB; write "max" for no limit`},
	{"8388608T", `bad size "8388608T": above 8 EiB`},
	{"99999999999T", `bad size "99999999999T": above 8 EiB`},
	{"8.6e9G", `bad size "8.6e9G": above 8 EiB`},
	{"1e400", `bad size "1e400": above 8 EiB`},
}

func TestParseBytes(t *testing.T) {
	for _, c := range goodBytes {
		got, err := units.ParseBytes(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, c := range badBytes {
		got, err := units.ParseBytes(c.in)
		if err == nil {
			t.Errorf("ParseBytes(%q) = %d, want an error", c.in, got)
		} else if !strings.HasPrefix(err.Error(), c.msg) {
			t.Errorf("ParseBytes(%q): error %q, want it to start with %q", c.in, err, c.msg)
		}
	}
}

var goodDurations = []struct {
	in   string
	want time.Duration
}{
	{"0", 0},
	{"0s", 0},
	{"1ns", 1},
	{"1us", time.Microsecond},
	{"1µs", time.Microsecond},
	{"1μs", time.Microsecond},
	{"250ms", 250 * time.Millisecond},
	{"2s", 2 * time.Second},
	{"1.5s", 1500 * time.Millisecond},
	{".5s", 500 * time.Millisecond},
	{"2m", 2 * time.Minute},
	{"1h", time.Hour},
	{"1h30m", 90 * time.Minute},
	{"1m0.5s", time.Minute + 500*time.Millisecond},
	{"+3s", 3 * time.Second},
	{" 100ms ", 100 * time.Millisecond},
	{"-0s", 0},
}

var badDurations = []struct {
	in, msg string
}{
	{"", `bad duration "": want a number with a unit ns, us, ms, s, m or h, e.g. "250ms", "1.5s" or "1m30s"`},
	{"soon", `bad duration "soon": want`},
	{"100", `bad duration "100": want`},
	{"2d", `bad duration "2d": want`},
	{"1 s", `bad duration "1 s": want`},
	{"s", `bad duration "s": want`},
	{"1.5", `bad duration "1.5": want`},
	{"3000000h", `bad duration "3000000h": want`},
	{"-1s", `bad duration "-1s": negative; write e.g. "250ms"`},
	{"-1ns", `bad duration "-1ns": negative`},
}

func TestParseDuration(t *testing.T) {
	for _, c := range goodDurations {
		got, err := units.ParseDuration(c.in)
		if err != nil || got.D() != c.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, c := range badDurations {
		got, err := units.ParseDuration(c.in)
		if err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", c.in, got)
		} else if !strings.HasPrefix(err.Error(), c.msg) {
			t.Errorf("ParseDuration(%q): error %q, want it to start with %q", c.in, err, c.msg)
		}
	}
}

func TestStrings(t *testing.T) {
	for b, want := range map[units.Bytes]string{0: "0", 1 << 20: "1048576", -5: "-5", units.Max: "max", units.Max - 1: "9223372036854775806"} {
		if got := b.String(); got != want {
			t.Errorf("Bytes(%d).String() = %q, want %q", int64(b), got, want)
		}
	}
	for d, want := range map[units.Duration]string{0: "0s", units.Duration(1500 * time.Millisecond): "1.5s", units.Duration(-time.Second): "-1s"} {
		if got := d.String(); got != want {
			t.Errorf("Duration(%d).String() = %q, want %q", int64(d), got, want)
		}
	}
}

// The JSON a spec or a result holds: what it reads and what it writes.
func TestBytesJSON(t *testing.T) {
	for _, c := range []struct {
		in   string
		want units.Bytes
		out  string
	}{
		{`1048576`, 1 << 20, `1048576`},
		{`0`, 0, `0`},
		{`-5`, -5, `-5`}, // left to the spec's validation
		{`"64M"`, 64 << 20, `67108864`},
		{`"1.5G"`, 3 << 29, `1610612736`},
		{`" 512 MiB "`, 512 << 20, `536870912`},
		{`"max"`, units.Max, `"max"`},
		{`9223372036854775807`, units.Max, `"max"`},
	} {
		var b units.Bytes
		if err := json.Unmarshal([]byte(c.in), &b); err != nil || b != c.want {
			t.Errorf("json %s: %d, %v; want %d", c.in, b, err, c.want)
			continue
		}
		out, err := json.Marshal(b)
		if err != nil || string(out) != c.out {
			t.Errorf("json %s: wrote %s, %v; want %s", c.in, out, err, c.out)
		}
	}
	for in, msg := range map[string]string{
		`1.5`:        `bad size 1.5: want an integer number of bytes or a string such as "64M"`,
		`1e6`:        `bad size 1e6: want`,
		`true`:       `bad size true: want`,
		`[1]`:        `bad size [1]: want`,
		`"64Q"`:      `bad size "64Q": want a number of bytes`,
		`"-1M"`:      `bad size "-1M": negative`,
		`"9999999T"`: `bad size "9999999T": above 8 EiB`,
	} {
		var b units.Bytes
		err := json.Unmarshal([]byte(in), &b)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("json %s: error %v, want it to contain %q", in, err, msg)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		out  string
	}{
		{`"1.5s"`, 1500 * time.Millisecond, `"1.5s"`},
		{`"250ms"`, 250 * time.Millisecond, `"250ms"`},
		{`"0s"`, 0, `"0s"`},
		{`"1h30m"`, 90 * time.Minute, `"1h30m0s"`},
		{`2000000000`, 2 * time.Second, `"2s"`},
		{`0`, 0, `"0s"`},
		// Measured spans and unvalidated specs may be negative.
		{`"-1.2s"`, -1200 * time.Millisecond, `"-1.2s"`},
		{`-5`, -5, `"-5ns"`},
	} {
		var d units.Duration
		if err := json.Unmarshal([]byte(c.in), &d); err != nil || d.D() != c.want {
			t.Errorf("json %s: %v, %v; want %v", c.in, d, err, c.want)
			continue
		}
		out, err := json.Marshal(d)
		if err != nil || string(out) != c.out {
			t.Errorf("json %s: wrote %s, %v; want %s", c.in, out, err, c.out)
		}
	}
	for in, msg := range map[string]string{
		`"soon"`: `bad duration "soon": want a number with a unit`,
		`"100"`:  `bad duration "100": want`,
		`1.5`:    `bad duration 1.5: want a string such as "250ms" or integer nanoseconds`,
		`true`:   `bad duration true: want`,
		`{}`:     `bad duration {}: want`,
	} {
		var d units.Duration
		err := json.Unmarshal([]byte(in), &d)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("json %s: error %v, want it to contain %q", in, err, msg)
		}
	}
}

// null is no value: the field keeps what it had, as encoding/json does
// for its own types.
func TestJSONNull(t *testing.T) {
	v := struct {
		B units.Bytes    `json:"b"`
		D units.Duration `json:"d"`
	}{B: 7, D: 7}
	if err := json.Unmarshal([]byte(`{"b": null, "d": null}`), &v); err != nil || v.B != 7 || v.D != 7 {
		t.Errorf("null: %+v, %v", v, err)
	}
}

// Every value written in each encoding reads back as itself.
func TestRoundTrips(t *testing.T) {
	sizes := []units.Bytes{0, 1, 4096, 64 << 20, 3 << 29, 2 << 40, units.Max - 1, units.Max}
	durs := []units.Duration{0, 1, units.Duration(time.Microsecond), units.Duration(1500 * time.Millisecond), units.Duration(90 * time.Minute), units.Duration(1<<63 - 1)}
	type doc struct {
		B units.Bytes    `toml:"b" json:"b"`
		D units.Duration `toml:"d" json:"d"`
	}
	for i := range max(len(sizes), len(durs)) {
		in := doc{B: sizes[min(i, len(sizes)-1)], D: durs[min(i, len(durs)-1)]}

		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(in); err != nil {
			t.Fatal(err)
		}
		var fromTOML doc
		if _, err := toml.Decode(buf.String(), &fromTOML); err != nil || fromTOML != in {
			t.Errorf("TOML %q: %+v, %v; want %+v", buf.String(), fromTOML, err, in)
		}

		js, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON doc
		if err := json.Unmarshal(js, &fromJSON); err != nil || fromJSON != in {
			t.Errorf("JSON %s: %+v, %v; want %+v", js, fromJSON, err, in)
		}

		var fromFlags doc
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.Var(&fromFlags.B, "b", "")
		fs.Var(&fromFlags.D, "d", "")
		if err := fs.Parse([]string{"-b", in.B.String(), "-d=" + in.D.String()}); err != nil || fromFlags != in {
			t.Errorf("flags %s %s: %+v, %v; want %+v", in.B, in.D, fromFlags, err, in)
		}
	}
}

// TOML as a policy file writes it: integers and strings alike.
func TestTOMLForms(t *testing.T) {
	var v struct {
		High  units.Bytes    `toml:"high"`
		Max   units.Bytes    `toml:"max"`
		Zero  units.Bytes    `toml:"zero"`
		Frac  units.Bytes    `toml:"frac"`
		Tick  units.Duration `toml:"tick"`
		Never units.Duration `toml:"never"`
	}
	src := "high = \"256MiB\"\nmax = \"max\"\nzero = 0\nfrac = \"1.5G\"\ntick = \"100ms\"\nnever = \"0\"\n"
	if _, err := toml.Decode(src, &v); err != nil {
		t.Fatal(err)
	}
	if v.High != 256<<20 || v.Max != units.Max || v.Zero != 0 || v.Frac != 3<<29 || v.Tick.D() != 100*time.Millisecond || v.Never != 0 {
		t.Errorf("decoded %+v", v)
	}
	for _, c := range []struct{ src, msg string }{
		{`high = "256 apples"`, `bad size "256 apples"`},
		{`high = -1`, `bad size "-1": negative`},
		{`tick = "soon"`, `bad duration "soon"`},
		{`tick = "-1s"`, `bad duration "-1s": negative`},
		{`tick = 100`, `bad duration "100"`},
	} {
		if _, err := toml.Decode(c.src, &v); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want it to contain %q", c.src, err, c.msg)
		}
	}
}

// A flag error names the flag and the text; the default shows in the
// usage only when it is not the zero value.
func TestFlags(t *testing.T) {
	var b units.Bytes
	var d units.Duration
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(&b, "size", "")
	fs.Var(&d, "every", "")
	if err := fs.Parse([]string{"-size", "1.5G", "-every", "20ms"}); err != nil || b != 3<<29 || d.D() != 20*time.Millisecond {
		t.Fatalf("parsed %d %v: %v", b, d, err)
	}
	for args, msg := range map[string]string{
		"-size=12X":   `invalid value "12X" for flag -size: bad size "12X"`,
		"-size=-1":    `invalid value "-1" for flag -size: bad size "-1": negative`,
		"-every=soon": `invalid value "soon" for flag -every: bad duration "soon"`,
		"-every=-1s":  `invalid value "-1s" for flag -every: bad duration "-1s": negative`,
	} {
		if err := fs.Parse([]string{args}); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: error %v, want it to contain %q", args, err, msg)
		}
	}

	b, d = 256<<20, units.Duration(5*time.Second)
	var usage strings.Builder
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(&usage)
	fs.Var(&b, "size", "`bytes` to use")
	fs.Var(&d, "every", "interval")
	var z units.Bytes
	fs.Var(&z, "zero", "no default shown")
	fs.PrintDefaults()
	for _, want := range []string{"(default 268435456)", "(default 5s)"} {
		if !strings.Contains(usage.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, usage.String())
		}
	}
	if strings.Contains(usage.String(), "default 0") {
		t.Errorf("usage shows a zero default:\n%s", usage.String())
	}
}
