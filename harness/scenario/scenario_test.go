package scenario

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/kernel"
	"github.com/agentcgroup/agentcgroup/harness/trial"

	"github.com/agentcgroup/agentcgroup/harness/stack"
)

var kernels = Kernels{"stock": false, "patched": true}

const good = `
name = "t"
seed = 1
repetitions = 2
configurations = ["baseline", "joint"]
[guest]
mem = "512M"
cpus = 2
swap = "zram:128M"
[timing]
duration = "5s"
[budgets.victim]
memory_high = "64M"
memory_max = "128M"
cpu_max = "50000"
[[victims]]
name = "chat"
kind = "interactive"
period = "20ms"
touch = "1M"
[[neighbours]]
name = "spin"
kind = "cpu_spin"
[[neighbours]]
name = "blow"
set = "spin"
kind = "memory_blowup"
target = "256M"
[daemon]
config = "# policy"
`

func TestParseGood(t *testing.T) {
	s, err := Parse("t.toml", []byte(good), kernels)
	if err != nil {
		t.Fatal(err)
	}
	if s.Guest.MemMB != 512 || s.Guest.ZramMB != 128 || s.Guest.CPUs != 2 {
		t.Errorf("guest = %+v", s.Guest)
	}
	if s.VictimBudget.CPUMax != "50000 100000" || s.VictimBudget.MemoryHigh != 64<<20 {
		t.Errorf("victim budget = %+v", s.VictimBudget)
	}
	if got := strings.Join(s.NeighbourSets, ","); got != "spin" {
		t.Errorf("sets = %s, want spin (blow joins spin's set)", got)
	}
	if s.Neighbours[0].CPUSpin.Threads != 2 {
		t.Errorf("cpu_spin threads default = %d, want guest cpus", s.Neighbours[0].CPUSpin.Threads)
	}
	if s.Victims[0].Interactive.WorkingSetBytes != 1<<20 {
		t.Errorf("working set default = %d, want touch", s.Victims[0].Interactive.WorkingSetBytes)
	}
	if s.Classes["chat"] != trial.ClassInteractive || s.Classes["spin"] != trial.ClassBackground {
		t.Errorf("classes = %v", s.Classes)
	}
	if s.Timing.Timeout <= s.Timing.Duration {
		t.Errorf("default timeout %v", s.Timing.Timeout)
	}
}

// problemsOf parses text and returns its problems, failing if it parsed.
func problemsOf(t *testing.T, text string) Problems {
	t.Helper()
	_, err := Parse("bad.toml", []byte(text), kernels)
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("want Problems, got %v", err)
	}
	return ps
}

func want(t *testing.T, ps Problems, line int, field, msg string) {
	t.Helper()
	for _, p := range ps {
		if p.Line == line && p.Field == field && strings.Contains(p.Msg, msg) {
			return
		}
	}
	t.Errorf("no problem at line %d field %s containing %q; got:\n%v", line, field, msg, ps)
}

func TestEveryProblemReported(t *testing.T) {
	text := `name = "t"
seed = "one"
kernel = "nonesuch"
configurations = ["baseline", "turbo"]
[guest]
mem = "512M"
cpus = "two"
swap = "disk:1G"
[timing]
duration = "ten"
[budgets.victim]
memory_high = "2G"
memory_max = "64Q"
[[victims]]
name = "chat"
kind = "interactive"
period = "20ms"
threads = 3
[[neighbours]]
name = "n1"
kind = "gpu_burner"
[[neighbours]]
name = "n2"
kind = "cpu_spin"
treads = 2
`
	ps := problemsOf(t, text)
	want(t, ps, 2, "seed", "want an integer")
	want(t, ps, 3, "kernel", `"nonesuch" is not a kernel in vmimages/kernels.toml`)
	want(t, ps, 4, "configurations", `unknown configuration "turbo"`)
	want(t, ps, 7, "guest.cpus", "want an integer")
	want(t, ps, 8, "guest.swap", `want "none" or "zram:SIZE"`)
	want(t, ps, 10, "timing.duration", "bad duration")
	want(t, ps, 13, "budgets.victim.memory_max", "bad size")
	want(t, ps, 18, "victims[0].threads", "does not apply to kind interactive")
	want(t, ps, 21, "neighbours[0].kind", `unknown kind "gpu_burner"`)
	want(t, ps, 25, "neighbours[1].treads", "unknown field")
	// memory_high = "2G" above the guest is a warning, not a problem.
	if len(ps) != 10 {
		t.Errorf("got %d problems, want 10:\n%v", len(ps), ps)
	}
	if !strings.Contains(ps.Error(), "bad.toml:21: neighbours[0].kind") {
		t.Errorf("message lacks file:line: field:\n%s", ps.Error())
	}
}

func TestSyntaxErrorHasLine(t *testing.T) {
	ps := problemsOf(t, "seed = 1\n[guest\nmem = 1\n")
	// The parser notices the unclosed header at the line break.
	if len(ps) != 1 || (ps[0].Line != 2 && ps[0].Line != 3) || !strings.Contains(ps[0].Msg, "TOML syntax") {
		t.Errorf("got %v", ps)
	}
}

func TestMissingRequired(t *testing.T) {
	ps := problemsOf(t, "name = \"x\"\n")
	want(t, ps, 0, "seed", "required")
	want(t, ps, 0, "timing.duration", "required")
	want(t, ps, 0, "victims", "at least one")
}

func TestSemanticChecks(t *testing.T) {
	base := strings.Replace(good, `configurations = ["baseline", "joint"]`, `configurations = ["baseline", "joint"]
memory_mode = "full"`, 1)
	ps := problemsOf(t, base)
	want(t, ps, 6, "memory_mode", "needs a kernel built with the memcg_bpf_ops patch")

	s, err := Parse("t.toml", []byte(strings.Replace(base, `name = "t"`, `name = "t"
kernel = "patched"`, 1)), kernels)
	if err != nil || len(s.MemoryModes) != 1 || s.MemoryModes[0] != stack.MemFull {
		t.Fatalf("patched kernel with full mode: %v", err)
	}

	ps = problemsOf(t, strings.Replace(good, `memory_max = "128M"`, `memory_max = "32M"`, 1))
	want(t, ps, 13, "budgets.victim.memory_high", "above memory_max")

	ps = problemsOf(t, strings.Replace(good, `name = "blow"`, `name = "chat"`, 1))
	want(t, ps, 25, "neighbours[1].name", "already used by victims[0]")

	ps = problemsOf(t, strings.Replace(good, `set = "spin"`, `set = "none"`, 1))
	want(t, ps, 26, "neighbours[1].set", "reserved")
}

// Size and Dur read what internal/units does and keep its refusals as
// the field's problem, so one pass reports every bad value.
func TestSizes(t *testing.T) {
	for in, want := range map[any]int64{int64(1): 1, "4K": 4096, "64M": 64 << 20, "1G": 1 << 30, "1GiB": 1 << 30, "2MB": 2 << 20, "1.5G": 3 << 29, int64(4096): 4096, " 512 MiB ": 512 << 20} {
		var f Size
		f.UnmarshalTOML(in)
		if f.problem() != "" || f.V != want || f.Max {
			t.Errorf("%#v: V %d, max %v, problem %q; want %d", in, f.V, f.Max, f.problem(), want)
		}
	}
	var f Size
	if f.UnmarshalTOML("max"); f.problem() != "" || !f.Max || f.V != 0 {
		t.Errorf(`"max": V %d, max %v, problem %q`, f.V, f.Max, f.problem())
	}
	for in, msg := range map[any]string{
		"":         `bad size ""`,
		"M":        `bad size "M"`,
		"-1M":      `bad size "-1M": negative`,
		int64(-1):  `bad size "-1": negative`,
		"12X":      `bad size "12X": want a number of bytes`,
		"one":      `bad size "one"`,
		1.5:        `want a size such as "256M" or a byte count, got float 1.5`,
		true:       `want a size such as "256M" or a byte count, got boolean true`,
		"9999999T": `bad size "9999999T": above 8 EiB`,
	} {
		var f Size
		f.UnmarshalTOML(in)
		if !f.isSet() || !strings.Contains(f.problem(), msg) {
			t.Errorf("%#v: problem %q, want it to contain %q", in, f.problem(), msg)
		}
	}
	for in, msg := range map[any]string{
		"soon":   `bad duration "soon": want a number with a unit`,
		"-1s":    `bad duration "-1s": negative`,
		"100":    `bad duration "100"`,
		int64(5): `want a duration string such as "10s", got integer 5`,
	} {
		var d Dur
		d.UnmarshalTOML(in)
		if !d.isSet() || !strings.Contains(d.problem(), msg) {
			t.Errorf("%#v: problem %q, want it to contain %q", in, d.problem(), msg)
		}
	}
	var d Dur
	if d.UnmarshalTOML("1m30s"); d.problem() != "" || d.V != 90*time.Second {
		t.Errorf(`"1m30s": %v, problem %q`, d.V, d.problem())
	}
}

// The scenarios shipped in the repository must validate against the
// kernels the repository pins.
func TestShippedScenarios(t *testing.T) {
	root := filepath.Join("..", "..")
	pins, err := kernel.LoadPins(filepath.Join(root, "vmimages", "kernels.toml"))
	if err != nil {
		t.Fatal(err)
	}
	ks := Kernels{}
	for name, p := range pins.Kernels {
		ks[name] = p.Built()
	}
	files, _ := filepath.Glob(filepath.Join(root, "scenarios", "*.toml"))
	if len(files) == 0 {
		t.Fatal("no scenarios found")
	}
	for _, f := range files {
		s, err := Load(f, ks)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if err := s.ResolveFiles(root); err != nil {
			t.Errorf("%v", err)
		}
		if s.Name+".toml" != filepath.Base(f) {
			t.Errorf("%s: name %q should match the file name", f, s.Name)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "scenarios", "SCHEMA.md")); err != nil {
		t.Error("scenarios/SCHEMA.md is missing")
	}
}

func TestDaemonPolicy(t *testing.T) {
	noPolicy := strings.Replace(good, "[daemon]\nconfig = \"# policy\"\n", "", 1)
	ps := problemsOf(t, noPolicy)
	want(t, ps, 0, "daemon", "step policy from agentcgroupd")

	withFile := strings.Replace(good, `config = "# policy"`, `config_file = "configs/policy.example.toml"`, 1)
	s, err := Parse("t.toml", []byte(withFile), kernels)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join("..", "..")
	if err := s.ResolveFiles(root); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.Policy, "[daemon]") {
		t.Errorf("policy not read: %q", s.Policy)
	}

	missing := strings.Replace(good, `config = "# policy"`, `config_file = "configs/nonesuch.toml"`, 1)
	s, err = Parse("t.toml", []byte(missing), kernels)
	if err != nil {
		t.Fatal(err)
	}
	err = s.ResolveFiles(root)
	var rp Problems
	if !errors.As(err, &rp) || rp[0].Line != 30 || rp[0].Field != "daemon.config_file" || !strings.Contains(rp[0].Msg, "relative to the repository root") {
		t.Errorf("missing policy file: %v", err)
	}
}

// An overcommitted guest is a legitimate experiment: limits above the
// guest, a blow-up beyond memory plus swap and limits that add up to more
// than the guest all parse, each with a warning at its line.
func TestOvercommitWarnsNotRefuses(t *testing.T) {
	text := strings.NewReplacer(
		`memory_max = "128M"`, `memory_max = "1G"`,
		`target = "256M"`, `target = "4G"`,
		`swap = "zram:128M"`, `swap = "zram:768M"`,
	).Replace(good) + `[budgets.neighbour]
memory_high = "300M"
`
	s, err := Parse("t.toml", []byte(text), kernels)
	if err != nil {
		t.Fatalf("overcommit refused: %v", err)
	}
	ws := s.Warnings
	want(t, ws, 9, "guest.swap", "larger than guest memory")
	want(t, ws, 14, "budgets.victim.memory_max", "larger than the guest's memory")
	want(t, ws, 28, "neighbours[1].target", "exceeds guest memory plus swap")
	want(t, ws, 32, "budgets.neighbour.memory_high", `neighbour set "spin" overcommits the guest: 2 neighbour and 1 victim limits add up to 1624M of 512M`)
	if len(ws) != 4 {
		t.Errorf("got %d warnings, want 4:\n%v", len(ws), ws)
	}
	if !strings.HasPrefix(ws[0].String(), "t.toml:9: guest.swap: ") {
		t.Errorf("a warning reads like a problem (file:line: field: message): %s", ws[0])
	}
	if s, err := Parse("t.toml", []byte(good), kernels); err != nil || len(s.Warnings) != 0 {
		t.Errorf("a scenario that fits warns: %v %v", err, s.Warnings)
	}
}

// The thrash and idle-victim parameters reach the workload specs, and
// malformed ones are refused at their line.
func TestMemoryWorkloadParams(t *testing.T) {
	text := strings.NewReplacer(
		`touch = "1M"`, "touch = \"1M\"\nworking_set = \"32M\"\nidle = \"2s\"\nalloc_probe = \"1M\"",
		`target = "256M"`, "target = \"256M\"\nfill = \"random\"\nthreads = 2",
	).Replace(good)
	s, err := Parse("t.toml", []byte(text), kernels)
	if err != nil {
		t.Fatal(err)
	}
	ip := s.Victims[0].Interactive
	if ip.Idle.D().Seconds() != 2 || ip.AllocProbeBytes != 1<<20 || ip.WorkingSetBytes != 32<<20 {
		t.Errorf("interactive params = %+v", ip)
	}
	mb := s.Neighbours[1].MemoryBlowup
	if mb.Fill != trial.FillRandom || mb.Threads != 2 {
		t.Errorf("memory_blowup params = %+v", mb)
	}

	bad := strings.NewReplacer(
		`touch = "1M"`, "touch = \"1M\"\nidle = \"5s\"\nalloc_probe = \"12\"",
		`target = "256M"`, "target = \"256M\"\nfill = \"zeros\"\nthreads = 0",
	).Replace(good)
	ps := problemsOf(t, bad)
	want(t, ps, 21, "victims[0].idle", "not shorter than timing.duration")
	want(t, ps, 22, "victims[0].alloc_probe", "at least a page")
	want(t, ps, 31, "neighbours[1].fill", `"zeros"`)
	want(t, ps, 32, "neighbours[1].threads", "want 1..256")

	ps = problemsOf(t, strings.Replace(good, `kind = "cpu_spin"`, "kind = \"cpu_spin\"\nfill = \"random\"", 1))
	want(t, ps, 24, "neighbours[0].fill", "does not apply to kind cpu_spin")
}
