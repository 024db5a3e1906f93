package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func exampleSrc(t *testing.T) []byte {
	_, me, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(me), "../../configs/policy.example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExampleParses(t *testing.T) {
	c, err := Parse("policy.example.toml", exampleSrc(t))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Profiles["tool_burst"]
	if p.Memory.High != 256<<20 || p.Memory.Max != 512<<20 || p.Memory.BurstDuration.D() != 2*time.Second {
		t.Fatalf("tool_burst memory %+v", p.Memory)
	}
	if c.Daemon.Tick.D() != 100*time.Millisecond || c.Profiles["background"].Escalation.ClearAfter.D() != time.Second {
		t.Fatalf("defaults not applied: %+v", c.Daemon)
	}
}

func TestSelect(t *testing.T) {
	c, err := Parse("x.toml", exampleSrc(t))
	if err != nil {
		t.Fatal(err)
	}
	name, _, err := c.Select("tool_burst", map[string]string{"repo": "big"}, []string{"pytest", "-x"})
	if err != nil || name != "big_tests" {
		t.Fatalf("%q %v", name, err)
	}
	name, _, _ = c.Select("tool_burst", map[string]string{"repo": "small"}, []string{"pytest"})
	if name != "tool_burst" {
		t.Fatalf("label mismatch picked %q", name)
	}
	name, _, _ = c.Select("tool_burst", map[string]string{"repo": "big"}, []string{"make"})
	if name != "tool_burst" {
		t.Fatalf("command mismatch picked %q", name)
	}
	if _, _, err := c.Select("gpu", nil, nil); err == nil || !strings.Contains(err.Error(), "interactive") {
		t.Fatalf("unknown class: %v", err)
	}
}

func TestErrorsNameFileLineField(t *testing.T) {
	good := string(exampleSrc(t))
	sizeLine := strings.Count(good[:strings.Index(good, `high = "256MiB"`)], "\n") + 1
	cases := []struct {
		name, from, to, want string
	}{
		{"bad size", `high = "256MiB"`, `high = "256 apples"`, fmt.Sprintf("x.toml:%d (profiles.tool_burst.memory.high)", sizeLine)},
		{"bad class", `class = "background"`, `class = "batch"`, `profiles.background.class: unknown class "batch"`},
		{"unknown field", `oom_group = true
[profiles.tool_burst.escalation]`, `oom_grup = true
[profiles.tool_burst.escalation]`, "profiles.tool_burst.memory.oom_grup: unknown field"},
		{"high above max", `high = "128MiB"`, `high = "1GiB"`, "profiles.background.memory.high: 1073741824 is above memory.max"},
		{"missing profile", `profile = "big_tests"`, `profile = "huge"`, `selector.0.profile: selector 1 names profile "huge"`},
		{"bad regexp", `command = "(pytest|go test)"`, `command = "(pytest"`, "selector.0.command"},
		{"bad duration", `freeze_after = "1s"`, `freeze_after = "soon"`, `duration "soon"`},
		{"syntax", `tick = "100ms"`, `tick = `, "x.toml:"},
		{"psi window", `psi_window = "1s"`, `psi_window = "20s"`, "psi_window"},
		{"probe", `probe = "auto"`, `probe = "maybe"`, `daemon.probe: "maybe" is not one of`},
		{"keep ended", `keep_ended = "0s"`, `keep_ended = "-1s"`, `(daemon.keep_ended): bad duration "-1s": negative`},
		{"memory mode", `memory_mode = "auto"`, `memory_mode = "patched"`, `daemon.memory_mode: "patched" is not one of auto, mainline, full`},
	}
	for _, tc := range cases {
		src := strings.Replace(good, tc.from, tc.to, 1)
		if src == good {
			t.Fatalf("%s: replacement did not apply", tc.name)
		}
		_, err := Parse("x.toml", []byte(src))
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, err, tc.want)
		}
		if !strings.HasPrefix(err.Error(), "x.toml:") {
			t.Errorf("%s: error %q does not start with file:line", tc.name, err)
		}
	}
}

func TestLineNumbersPointAtTheField(t *testing.T) {
	src := strings.Replace(string(exampleSrc(t)), `class = "background"`, `class = "batch"`, 1)
	_, err := Parse("x.toml", []byte(src))
	lines := strings.Split(src, "\n")
	var want int
	for i, l := range lines {
		if strings.Contains(l, `"batch"`) {
			want = i + 1
		}
	}
	if !strings.HasPrefix(err.Error(), "x.toml:"+strconv.Itoa(want)+":") {
		t.Fatalf("error %q, want line %d", err, want)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"0": 0, "4096": 4096, "64K": 64 << 10, "512MiB": 512 << 20, "2G": 2 << 30, "1.5G": 3 << 29, "max": Unlimited} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err != nil || b != want {
			t.Errorf("%q: %d %v", in, b, err)
		}
	}
	for _, in := range []string{"", "-1", "12 parsecs", "99999999999T"} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
