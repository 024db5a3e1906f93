// Package scenario reads and validates an evaluation scenario
// (scenarios/*.toml, documented in scenarios/SCHEMA.md). Validation runs
// before any guest boots and reports every problem at once, each with file,
// line and field.
package scenario

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/agentcgroup/agentcgroup/harness/apt"
	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/sweep"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/internal/units"
)

// Scenario is a validated scenario file.
type Scenario struct {
	Path        string
	Hash        string // sha256 of the file's bytes
	Name        string
	Description string
	Kernel      string
	Seed        uint64
	Repetitions int
	// Configs are the configurations' names (see harness/stack), in the
	// order written.
	Configs []string
	// MemoryModes are the modes the configurations with a daemon run in;
	// with more than one, each of those becomes one cell per mode.
	MemoryModes []stack.Memory
	Solo        bool

	Guest  Guest
	Timing Timing

	VictimBudget    trial.Budget
	NeighbourBudget trial.Budget

	Scheduler trial.Process
	Daemon    trial.Process
	// Policy is the agentcgroupd policy (TOML) every configuration with a
	// policy source uses: the daemon runs on it, and cpu-only writes the
	// step policy from its profiles.
	Policy string
	// configFiles are [scheduler]/[daemon] config_file entries still to be
	// read by ResolveFiles.
	configFiles []configFile

	// Sweep is the [sweep] table: parameters whose values are run as extra
	// cells on top of the configurations they act in (see harness/sweep).
	Sweep sweep.Grid
	// sweepLines are the lines of the swept parameters, for problems found
	// once the policy is read.
	sweepLines map[string]int

	Victims    []trial.Victim
	Neighbours []trial.Neighbour
	// NeighbourSets lists the neighbour sets in the order first written;
	// SetOf maps a neighbour name to its set.
	NeighbourSets []string
	SetOf         map[string]string
	// Classes maps a workload name to its step class.
	Classes map[string]string
	// Warnings are findings that do not stop the scenario: settings that
	// are legitimate for some experiments (an overcommitted guest) but
	// likely mistakes otherwise. Callers print them.
	Warnings Problems
}

// Guest is the VM size and what is added to its image.
type Guest struct {
	MemMB  int
	CPUs   int
	ZramMB int // 0: no swap
	// Packages are Debian packages whose programs the guest gets (see
	// harness/guestpkg), sorted, each once.
	Packages []string
}

// Timing holds the per-trial phases.
type Timing struct {
	Warmup, Duration, Timeout, SampleEvery time.Duration
}

// Kernels tells validation which kernel names exist and whether each is a
// kernel built with our patches (needed for memory_mode "full").
type Kernels map[string]bool

// Session ids used for the two roles.
const (
	VictimSession    = "victim"
	NeighbourSession = "noisy"
)

// Problem is one validation finding.
type Problem struct {
	File  string
	Line  int // 0 when the field is absent from the file
	Field string
	Msg   string
}

func (p Problem) String() string {
	loc := p.File
	if p.Line > 0 {
		loc = fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	if p.Field == "" {
		return loc + ": " + p.Msg
	}
	return fmt.Sprintf("%s: %s: %s", loc, p.Field, p.Msg)
}

// Problems is every finding of one validation; it is the error Load returns.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return fmt.Sprintf("%d problem(s) in scenario:\n  %s", len(ps), strings.Join(lines, "\n  "))
}

// Load reads, decodes and validates a scenario file.
func Load(path string, kernels Kernels) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scenario: %w (pass a file such as scenarios/smoke.toml)", err)
	}
	return Parse(path, data, kernels)
}

// Parse validates scenario text; path is used in messages and to default
// the name.
func Parse(path string, data []byte, kernels Kernels) (*Scenario, error) {
	var raw rawFile
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, Problems{{File: path, Line: pe.Position.Line, Msg: "TOML syntax: " + pe.Message}}
		}
		return nil, Problems{{File: path, Msg: err.Error()}}
	}
	v := &validator{file: path, lines: indexLines(string(data))}
	if _, err := toml.Decode(string(data), &v.entries); err != nil {
		return nil, Problems{{File: path, Msg: err.Error()}}
	}
	for _, k := range md.Undecoded() {
		if registeredKey(k) {
			continue // the entry's kind judges it
		}
		key := k.String()
		hits := v.lines.linesFor(key)
		sort.Slice(hits, func(i, j int) bool { return hits[i].Line < hits[j].Line })
		if len(hits) == 0 {
			v.add(key, "unknown field (see scenarios/SCHEMA.md for the fields a scenario takes)")
		}
		for _, h := range hits {
			v.probs = append(v.probs, Problem{File: path, Line: h.Line, Field: h.Path,
				Msg: "unknown field (see scenarios/SCHEMA.md for the fields a scenario takes)"})
		}
	}
	sum := sha256.Sum256(data)
	s := &Scenario{Path: path, Hash: hex.EncodeToString(sum[:])}
	v.build(&raw, s, kernels)
	if len(v.probs) == 0 && len(s.configFiles) == 0 {
		// An inline policy is known now; a config_file one is checked by
		// ResolveFiles.
		v.probs = append(v.probs, s.checkSweepPolicy()...)
	}
	if len(v.probs) > 0 {
		sort.SliceStable(v.probs, func(i, j int) bool {
			a, b := v.probs[i], v.probs[j]
			if (a.Line == 0) != (b.Line == 0) {
				return b.Line == 0
			}
			return a.Line < b.Line
		})
		return nil, v.probs
	}
	sort.SliceStable(v.warns, func(i, j int) bool { return v.warns[i].Line < v.warns[j].Line })
	s.Warnings = v.warns
	return s, nil
}

type validator struct {
	file    string
	lines   lineIndex
	entries entries // the workload entries again, for registered kinds
	probs   Problems
	warns   Problems
}

func (v *validator) add(field, format string, a ...any) {
	v.probs = append(v.probs, Problem{File: v.file, Line: v.lines.line(field), Field: field, Msg: fmt.Sprintf(format, a...)})
}

// warn records a finding that does not fail validation.
func (v *validator) warn(field, format string, a ...any) {
	v.warns = append(v.warns, Problem{File: v.file, Line: v.lines.line(field), Field: field, Msg: fmt.Sprintf(format, a...)})
}

type lenient interface {
	isSet() bool
	problem() string
}

// ok reports a malformed value and returns whether f is set and well formed.
func (v *validator) ok(field string, f lenient) bool {
	if p := f.problem(); p != "" {
		v.add(field, "%s", p)
		return false
	}
	return f.isSet()
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$`)

func (v *validator) build(r *rawFile, s *Scenario, kernels Kernels) {
	// Identity.
	s.Name = strings.TrimSuffix(filepath.Base(s.Path), filepath.Ext(s.Path))
	if v.ok("name", &r.Name) {
		s.Name = r.Name.V
	}
	if !nameRe.MatchString(s.Name) {
		v.add("name", "%q: use 1-48 letters, digits, '_' or '-' (it names the results directory)", s.Name)
	}
	if v.ok("description", &r.Description) {
		s.Description = r.Description.V
	}
	s.Kernel = "stock"
	if v.ok("kernel", &r.Kernel) {
		s.Kernel = r.Kernel.V
	}
	built, known := kernels[s.Kernel]
	if !known {
		v.add("kernel", "%q is not a kernel in vmimages/kernels.toml (known: %s); add a pin there or pick a known name",
			s.Kernel, strings.Join(sortedKeys(kernels), ", "))
	}
	if v.ok("seed", &r.Seed) {
		s.Seed = uint64(r.Seed.V)
	} else if r.Seed.problem() == "" {
		v.add("seed", "required: any integer; it fixes the trial order and every workload's random choices")
	}
	s.Repetitions = 1
	if v.ok("repetitions", &r.Repetitions) {
		s.Repetitions = int(r.Repetitions.V)
		if s.Repetitions < 1 || s.Repetitions > 1000 {
			v.add("repetitions", "%d, want 1..1000", s.Repetitions)
		}
	}
	s.Configs = []string{"baseline", "cpu-only", "mem-only", "joint"}
	if v.ok("configurations", &r.Configurations) {
		s.Configs = nil
		seen := map[string]bool{}
		for _, c := range r.Configurations.V {
			_, err := stack.Lookup(c, "")
			switch {
			case err != nil:
				v.add("configurations", "%v", err)
			case seen[c]:
				v.add("configurations", "%q listed twice", c)
			default:
				s.Configs = append(s.Configs, c)
			}
			seen[c] = true
		}
		if len(r.Configurations.V) == 0 {
			v.add("configurations", "empty: list at least one of %s", strings.Join(stack.Names(), ", "))
		}
	}
	checkMode := func(key, name string) stack.Memory {
		m, err := stack.ParseMemory(name)
		if err != nil {
			v.add(key, "%v", err)
			return ""
		}
		if m == stack.MemFull && known && !built {
			v.add(key, `"full" needs a kernel built with the memcg_bpf_ops patch; kernel %q is a stock kernel (use "mainline" or a patched kernel)`, s.Kernel)
		}
		return m
	}
	s.MemoryModes = []stack.Memory{stack.MemMainline}
	if v.ok("memory_mode", &r.MemoryMode) {
		s.MemoryModes = []stack.Memory{checkMode("memory_mode", r.MemoryMode.V)}
	}
	if v.ok("memory_modes", &r.MemoryModes) {
		if r.MemoryMode.V != "" {
			v.add("memory_modes", "give memory_mode or memory_modes, not both")
		}
		s.MemoryModes = nil
		for _, name := range r.MemoryModes.V {
			m := checkMode("memory_modes", name)
			if slices.Contains(s.MemoryModes, m) {
				v.add("memory_modes", "%q listed twice", name)
			}
			s.MemoryModes = append(s.MemoryModes, m)
		}
		if len(s.MemoryModes) == 0 {
			v.add("memory_modes", "empty: list %q, %q or both", stack.MemMainline, stack.MemFull)
		}
	}
	s.Solo = true
	if v.ok("solo", &r.Solo) {
		s.Solo = r.Solo.V
	}

	v.guest(r, s)
	v.timing(r, s)
	s.VictimBudget = v.budget("budgets.victim", &r.Budgets.Victim, s.Guest)
	s.NeighbourBudget = v.budget("budgets.neighbour", &r.Budgets.Neighbour, s.Guest)
	s.Scheduler = v.process(s, "scheduler", &r.Scheduler)
	s.Daemon = v.process(s, "daemon", &r.Daemon)
	var needPolicy []string
	for _, name := range s.Configs {
		if c, err := stack.Lookup(name, ""); err == nil && c.Policy != stack.PolicyNone {
			needPolicy = append(needPolicy, name)
		}
	}
	if len(needPolicy) > 0 && !r.Daemon.Config.isSet() && !r.Daemon.ConfigFile.isSet() {
		v.add("daemon", `%s take their step policy from agentcgroupd's profiles: set [daemon] config_file = "scenarios/policies/default.toml" (or config = "<TOML>")`, strings.Join(needPolicy, ", "))
	}
	v.workloads(r, s)
	v.overcommit(s)
	s.sweepLines = map[string]int{}
	for _, p := range sweep.Params {
		s.sweepLines[p.Name] = v.lines.line("sweep." + p.Name)
	}
	v.sweep(r, s)
}

// overcommit says when a neighbour set's limits plus the victims' add up to
// more than the guest: allowed (real agent hosts overcommit), but then the
// limits stop protecting anyone and global reclaim and the OOM killer take
// over, which the reader of a scenario should know was intended.
func (v *validator) overcommit(s *Scenario) {
	limit := func(b trial.Budget) int64 {
		if b.MemoryMax > 0 {
			return int64(b.MemoryMax)
		}
		return int64(b.MemoryHigh)
	}
	per := limit(s.NeighbourBudget)
	vic := limit(s.VictimBudget)
	if per == 0 {
		return
	}
	guest := int64(s.Guest.MemMB) << 20
	field := "budgets.neighbour.memory_max"
	if s.NeighbourBudget.MemoryMax == 0 {
		field = "budgets.neighbour.memory_high"
	}
	for _, set := range s.NeighbourSets {
		n := 0
		for _, name := range s.SetOf {
			if name == set {
				n++
			}
		}
		sum := int64(n) * per
		if vic > 0 {
			sum += int64(len(s.Victims)) * vic
		}
		if sum > guest {
			v.warn(field, "neighbour set %q overcommits the guest: %d neighbour and %d victim limits add up to %dM of %dM guest memory, so global reclaim and the OOM killer can act",
				set, n, len(s.Victims), sum>>20, guest>>20)
		}
	}
}

func (v *validator) guest(r *rawFile, s *Scenario) {
	s.Guest = Guest{MemMB: 1024, CPUs: 2}
	if v.ok("guest.mem", &r.Guest.Mem) {
		if r.Guest.Mem.Max {
			v.add("guest.mem", `"max" is not a guest size; write e.g. "1024M"`)
		} else {
			s.Guest.MemMB = int(r.Guest.Mem.V >> 20)
			if s.Guest.MemMB < 256 || s.Guest.MemMB > 65536 {
				v.add("guest.mem", "%d MiB, want 256M..64G", s.Guest.MemMB)
			}
		}
	}
	if v.ok("guest.cpus", &r.Guest.CPUs) {
		s.Guest.CPUs = int(r.Guest.CPUs.V)
		if s.Guest.CPUs < 1 || s.Guest.CPUs > 64 {
			v.add("guest.cpus", "%d, want 1..64", s.Guest.CPUs)
		}
	}
	if v.ok("guest.swap", &r.Guest.Swap) {
		sw := r.Guest.Swap.V
		switch {
		case sw == "none":
		case strings.HasPrefix(sw, "zram:"):
			n, err := units.ParseBytes(strings.TrimPrefix(sw, "zram:"))
			switch {
			case err != nil:
				v.add("guest.swap", `%q: %v`, sw, err)
			case n == units.Max:
				v.add("guest.swap", `%q: "max" is not a zram size; write e.g. "zram:256M"`, sw)
			case n < 1<<20:
				v.add("guest.swap", `%q: zram size must be at least 1M`, sw)
			default:
				s.Guest.ZramMB = int(n >> 20)
				if int(n>>20) > s.Guest.MemMB {
					v.warn("guest.swap", `%q: zram larger than guest memory (%d MiB) can only be filled with compressible pages; incompressible ones use RAM page for page`, sw, s.Guest.MemMB)
				}
			}
		default:
			v.add("guest.swap", `%q, want "none" or "zram:SIZE" such as "zram:256M"`, sw)
		}
	}
	if v.ok("guest.packages", &r.Guest.Packages) {
		seen := map[string]bool{}
		for _, name := range r.Guest.Packages.V {
			if m := apt.CheckName(name); m != "" {
				v.add("guest.packages", "%s", m)
			} else if seen[name] {
				v.add("guest.packages", "%q listed twice", name)
			}
			seen[name] = true
		}
		s.Guest.Packages = slices.Sorted(maps.Keys(seen))
	}
}

func (v *validator) timing(r *rawFile, s *Scenario) {
	t := &r.Timing
	if v.ok("timing.warmup", &t.Warmup) {
		s.Timing.Warmup = t.Warmup.V
	}
	if v.ok("timing.duration", &t.Duration) {
		s.Timing.Duration = t.Duration.V
		if s.Timing.Duration <= 0 {
			v.add("timing.duration", "must be > 0")
		}
	} else if t.Duration.problem() == "" {
		v.add("timing.duration", `required: the measured phase of each trial, e.g. "10s"`)
	}
	if v.ok("timing.sample_every", &t.SampleEvery) {
		s.Timing.SampleEvery = t.SampleEvery.V
		if s.Timing.SampleEvery > 0 && s.Timing.SampleEvery < 10*time.Millisecond {
			v.add("timing.sample_every", "%v is too fine for the guest to sample; use >= 10ms", s.Timing.SampleEvery)
		}
	}
	// Default: generous, since boots and kernel-heavy work are slow under TCG.
	s.Timing.Timeout = 2*(s.Timing.Warmup+s.Timing.Duration) + 90*time.Second
	if v.ok("timing.timeout", &t.Timeout) {
		s.Timing.Timeout = t.Timeout.V
		if min := s.Timing.Warmup + s.Timing.Duration + 10*time.Second; s.Timing.Timeout < min {
			v.add("timing.timeout", "%v is shorter than warmup + duration + 10s boot allowance (%v)", s.Timing.Timeout, min)
		}
	}
}

func (v *validator) budget(p string, b *rawBudget, g Guest) trial.Budget {
	var out trial.Budget
	if v.ok(p+".cpu_weight", &b.CPUWeight) {
		out.CPUWeight = int(b.CPUWeight.V)
		if out.CPUWeight < 1 || out.CPUWeight > 10000 {
			v.add(p+".cpu_weight", "%d, want 1..10000", out.CPUWeight)
		}
	}
	if v.ok(p+".cpu_max", &b.CPUMax) {
		cm, err := normaliseCPUMax(b.CPUMax.V)
		if err != nil {
			v.add(p+".cpu_max", "%v", err)
		}
		out.CPUMax = cm
	}
	guestBytes := int64(g.MemMB) << 20
	mem := func(name string, f *Size) trial.Bytes {
		if !v.ok(p+"."+name, f) || f.Max {
			return 0
		}
		if f.V < 1<<20 {
			v.add(p+"."+name, "%d bytes is below 1M; the guest could not even start the workload", f.V)
		}
		if f.V > guestBytes {
			v.warn(p+"."+name, "%dM is larger than the guest's memory (%dM): the limit never bites by itself, the guest runs out first and global reclaim and the OOM killer act (intended for an overcommitted node; otherwise lower it or raise guest.mem)",
				f.V>>20, g.MemMB)
		}
		return trial.Bytes(f.V)
	}
	out.MemoryHigh = mem("memory_high", &b.MemoryHigh)
	out.MemoryMax = mem("memory_max", &b.MemoryMax)
	if out.MemoryHigh > 0 && out.MemoryMax > 0 && out.MemoryHigh > out.MemoryMax {
		v.add(p+".memory_high", "%dM is above memory_max %dM; high must not exceed max", out.MemoryHigh>>20, out.MemoryMax>>20)
	}
	if v.ok(p+".pids_max", &b.PidsMax) {
		out.PidsMax = int(b.PidsMax.V)
		if out.PidsMax < 1 || out.PidsMax > 1<<22 {
			v.add(p+".pids_max", "%d, want 1..4194304", out.PidsMax)
		}
	}
	return out
}

// normaliseCPUMax accepts "max", "QUOTA" or "QUOTA PERIOD" (microseconds)
// and returns the two-field form cpu.max takes.
func normaliseCPUMax(s string) (string, error) {
	f := strings.Fields(s)
	bad := fmt.Errorf(`%q: want "max", "QUOTA_US" or "QUOTA_US PERIOD_US" such as "50000 100000"`, s)
	if len(f) == 0 || len(f) > 2 {
		return "", bad
	}
	period := int64(100000)
	if len(f) == 2 {
		if _, err := fmt.Sscan(f[1], &period); err != nil || period < 1000 || period > 1000000 {
			return "", fmt.Errorf("%q: period must be 1000..1000000 microseconds", s)
		}
	}
	if f[0] != "max" {
		var q int64
		if _, err := fmt.Sscan(f[0], &q); err != nil || fmt.Sprint(q) != f[0] {
			return "", bad
		}
		if q < 1000 {
			return "", fmt.Errorf("%q: quota must be at least 1000 microseconds", s)
		}
	}
	return fmt.Sprintf("%s %d", f[0], period), nil
}

func (v *validator) process(s *Scenario, p string, r *rawProcess) trial.Process {
	var out trial.Process
	if v.ok(p+".args", &r.Args) {
		out.Args = r.Args.V
	}
	if p == "scheduler" && (r.Config.isSet() || r.ConfigFile.isSet()) {
		v.add(p, "scx_agent_flatcg takes flags, not a policy file: use args; the step policy comes from [daemon]'s policy")
		return out
	}
	if v.ok(p+".config_file", &r.ConfigFile) {
		if r.Config.isSet() {
			v.add(p+".config_file", "set either config or config_file, not both")
		}
		if filepath.IsAbs(r.ConfigFile.V) {
			v.add(p+".config_file", "%q: write a path relative to the repository root so the scenario works in any checkout", r.ConfigFile.V)
		}
		s.configFiles = append(s.configFiles, configFile{role: p, path: r.ConfigFile.V, line: v.lines.line(p + ".config_file"), file: v.file})
	}
	if v.ok(p+".config", &r.Config) {
		s.Policy = r.Config.V
		var probe map[string]any
		if _, err := toml.Decode(s.Policy, &probe); err != nil {
			v.add(p+".config", "not valid TOML: %v", err)
		}
	}
	if v.ok(p+".ready", &r.Ready) {
		out.Ready = r.Ready.V
		if !strings.HasPrefix(out.Ready, "/") {
			v.add(p+".ready", "%q: want an absolute guest path", out.Ready)
		}
	}
	return out
}

type configFile struct {
	role, path, file string
	line             int
}

// ResolveFiles reads every config_file, relative to the repository root,
// into the process's ConfigTOML and checks it is TOML.
func (s *Scenario) ResolveFiles(root string) error {
	var ps Problems
	for _, cf := range s.configFiles {
		field := cf.role + ".config_file"
		b, err := os.ReadFile(filepath.Join(root, cf.path))
		if err != nil {
			ps = append(ps, Problem{File: cf.file, Line: cf.line, Field: field, Msg: fmt.Sprintf("%v (the path is relative to the repository root)", err)})
			continue
		}
		var probe map[string]any
		if _, err := toml.Decode(string(b), &probe); err != nil {
			ps = append(ps, Problem{File: cf.file, Line: cf.line, Field: field, Msg: fmt.Sprintf("%s is not valid TOML: %v", cf.path, err)})
			continue
		}
		s.Policy = string(b)
	}
	s.configFiles = nil
	if len(ps) == 0 {
		ps = append(ps, s.checkSweepPolicy()...)
	}
	if len(ps) > 0 {
		return ps
	}
	return nil
}

func sortedKeys(m Kernels) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
