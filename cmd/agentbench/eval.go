package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/analysis"
	"github.com/agentcgroup/agentcgroup/harness/kernel"
	"github.com/agentcgroup/agentcgroup/harness/lab"
	"github.com/agentcgroup/agentcgroup/harness/plan"
	"github.com/agentcgroup/agentcgroup/harness/report"
	"github.com/agentcgroup/agentcgroup/harness/results"
	"github.com/agentcgroup/agentcgroup/harness/runner"
	"github.com/agentcgroup/agentcgroup/harness/scenario"
	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/sweep"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/harness/vm"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

func init() {
	commands["eval"] = runEval
}

func runEval(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	resume := fs.String("resume", "", "finish an interrupted run: a results/<time>-<scenario> directory")
	base := fs.String("results", "", "parent directory for the run (default: results/ in the repository)")
	dry := fs.Bool("dry-run", false, "validate the scenario and print the plan; boot nothing")
	verbose := fs.Bool("v", false, "show harness progress (kernel fetch, image build)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: agentbench eval [flags] scenarios/<name>.toml\n       agentbench eval --resume results/<dir>")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*resume == "") == (fs.NArg() != 1) || fs.NArg() > 1 {
		fs.Usage()
		return flag.ErrHelp
	}
	root, err := lab.RepoRoot()
	if err != nil {
		return err
	}
	pins, err := kernel.LoadPins(filepath.Join(root, "vmimages", "kernels.toml"))
	if err != nil {
		return err
	}
	kernels := scenario.Kernels{}
	for name, p := range pins.Kernels {
		kernels[name] = p.Built()
	}

	// Everything that can be checked without a guest is checked first.
	var (
		s    *scenario.Scenario
		run  *results.Run
		prov *results.Provenance
	)
	if *resume != "" {
		if run, err = results.Open(*resume); err != nil {
			return err
		}
		if s, err = scenario.Load(filepath.Join(run.Dir, results.ScenarioFile), kernels); err != nil {
			return err
		}
	} else if s, err = scenario.Load(fs.Arg(0), kernels); err != nil {
		return err
	}
	if err := s.ResolveFiles(root); err != nil {
		return err
	}
	// Warnings do not stop the run: the settings are legitimate for some
	// experiments (an overcommitted guest), so they are shown, not refused.
	for _, w := range s.Warnings {
		fmt.Fprintf(os.Stderr, "warning: %s\n", w)
	}
	p, err := plan.Build(s)
	if err != nil {
		return err
	}
	if *dry {
		return printPlan(s, p)
	}
	if err := vm.Available(); err != nil {
		return err
	}
	unavailable := unavailableConfigs(root, p)
	var logw io.Writer
	if *verbose {
		logw = os.Stderr
	}
	fmt.Fprintf(os.Stderr, "agentbench eval: preparing kernel %q and the guest image\n", s.Kernel)
	env, err := lab.Setup(ctx, s.Kernel, logw)
	if err != nil {
		return fmt.Errorf("kernel %q: %w", s.Kernel, err)
	}
	kinfo, err := kernelInfo(pins, s.Kernel, env)
	if err != nil {
		return err
	}
	// Packages are resolved and fetched before the first trial, so a
	// misspelt name or an unreachable archive stops the run here.
	var guestPkgs []string
	if len(s.Guest.Packages) > 0 {
		fmt.Fprintf(os.Stderr, "agentbench eval: preparing guest packages %s\n", strings.Join(s.Guest.Packages, " "))
		set, err := env.Packages(ctx, s.Guest.Packages, logw)
		if err != nil {
			return err
		}
		guestPkgs = set.Manifest.Describe()
	}

	if run != nil {
		stored, err := run.ReadPlan()
		if err != nil {
			return err
		}
		if err := runner.SamePlan(stored, p); err != nil {
			return fmt.Errorf("%s: %w; start a new run instead of resuming", run.Dir, err)
		}
		if prov, err = run.ReadProvenance(); err != nil {
			return err
		}
		commit, dirty := results.GitState(ctx, root)
		prov.Resumed = append(prov.Resumed, results.Resumption{At: time.Now().UTC(), GitCommit: commit, GitDirty: dirty})
	} else {
		data, err := os.ReadFile(s.Path)
		if err != nil {
			return err
		}
		if *base == "" {
			*base = filepath.Join(root, "results")
		}
		if run, err = results.Create(*base, s.Name, time.Now()); err != nil {
			return err
		}
		if err := fsutil.WriteFile(filepath.Join(run.Dir, results.ScenarioFile), data); err != nil {
			return err
		}
		if err := run.WritePlan(p); err != nil {
			return err
		}
		if prov, err = results.BaseProvenance(ctx, root, vm.Qemu); err != nil {
			return err
		}
		prov.Scenario, prov.ScenarioPath, prov.ScenarioSHA256, prov.Seed = s.Name, s.Path, s.Hash, s.Seed
	}
	prov.Kernel = kinfo
	if *resume != "" && len(prov.GuestPackages) > 0 && !slices.Equal(prov.GuestPackages, guestPkgs) {
		fmt.Fprintf(os.Stderr, "warning: the guest packages changed since the run started (the suite moved on); the trials still to run get:\n  %s\n", strings.Join(guestPkgs, "\n  "))
	}
	prov.GuestPackages = guestPkgs
	prov.Unavailable = unavailable
	if err := run.WriteProvenance(prov); err != nil {
		return err
	}

	fmt.Fprintf(os.Stderr, "agentbench eval: %s, %d trials -> %s\n", s.Name, len(p.Trials), run.Dir)
	for cfg, why := range unavailable {
		fmt.Fprintf(os.Stderr, "agentbench eval: configuration %s cannot run: %s (its trials are skipped and labelled)\n", cfg, why)
	}
	sum, err := runner.Run(ctx, s, p, run, runner.Options{Progress: os.Stderr, Unavailable: unavailable, Provenance: prov})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return fmt.Errorf("interrupted; finished trials are kept, continue with: agentbench eval --resume %s", run.Dir)
		}
		return fmt.Errorf("%w (continue with: agentbench eval --resume %s)", err, run.Dir)
	}
	fmt.Fprintf(os.Stderr, "agentbench eval: %d ran (%d ok, %d failed), %d skipped, %d already done\n",
		sum.Ran, sum.OK, sum.Failed, sum.Skipped, sum.AlreadyDone)
	return writeReport(run.Dir)
}

// writeReport analyses a run directory and writes its derived files.
func writeReport(dir string) error {
	a, err := analysis.Analyze(dir)
	if err != nil {
		return err
	}
	if err := report.Write(a); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "agentbench: %d of %d trials usable; report %s\n",
		len(a.Trials), a.Planned, filepath.Join(dir, results.ReportFile))
	return nil
}

// unavailableConfigs names the cells whose helper binary is not part of
// this build: the guest image carries every cmd/* of the repository.
func unavailableConfigs(root string, p *plan.Plan) map[string]string {
	has := func(bin string) bool {
		m, _ := filepath.Glob(filepath.Join(root, "cmd", bin, "*.go"))
		return len(m) > 0
	}
	out := map[string]string{}
	for _, t := range p.Trials {
		st := t.Spec.Stack
		var missing []string
		if st.Scheduler != stack.SchedNone && !has(trial.SchedulerBinary) {
			missing = append(missing, "scheduler binary "+trial.SchedulerBinary)
		}
		if st.Daemon && !has(trial.DaemonBinary) {
			missing = append(missing, "memory policy daemon "+trial.DaemonBinary)
		}
		if len(missing) > 0 {
			out[t.Config] = strings.Join(missing, " and ") + " absent from this build (no cmd/ package)"
		}
	}
	return out
}

func kernelInfo(pins *kernel.Pins, name string, env *lab.Env) (results.KernelInfo, error) {
	pin, err := pins.Get(name)
	if err != nil {
		return results.KernelInfo{}, err
	}
	pj, err := json.Marshal(pin)
	if err != nil {
		return results.KernelInfo{}, err
	}
	k := results.KernelInfo{Name: name, Release: pin.Release, PinSHA256: results.HashBytes(pj)}
	for _, p := range pin.Packages {
		k.Packages = append(k.Packages, fmt.Sprintf("%s=%s %s", p.Name, p.Version, p.SHA256))
	}
	if pin.Source != nil {
		k.Packages = append(k.Packages, fmt.Sprintf("%s=%s %s (source)", pin.Source.Name, pin.Source.Version, pin.Source.SHA256))
	}
	// The configuration is Debian's for a stock kernel (fixed by the
	// package hashes) and ours for a built one; either way the booted
	// image is what ran, so its hash is the config fingerprint.
	if env != nil && env.Kernel != nil && env.Kernel.BzImage != "" {
		h, err := results.HashFile(env.Kernel.BzImage)
		if err != nil {
			return k, err
		}
		k.Config, k.ConfigHash = "bzImage (its build configuration included)", h
		if pin.Built() && pin.Config != "" {
			k.Config = "bzImage built from config fragment " + pin.Config
		}
	}
	return k, nil
}

func printPlan(s *scenario.Scenario, p *plan.Plan) error {
	fmt.Printf("scenario %s (%s): %d trials, guest %d MiB / %d CPUs, swap %d MiB, kernel %s\n",
		s.Name, s.Path, len(p.Trials), s.Guest.MemMB, s.Guest.CPUs, s.Guest.ZramMB, s.Kernel)
	if len(s.Guest.Packages) > 0 {
		fmt.Printf("guest packages (fetched when the run starts): %s\n", strings.Join(s.Guest.Packages, " "))
	}
	per := map[string]int{}
	for _, t := range p.Trials {
		per[t.Config]++
	}
	fmt.Printf("%d cells", len(p.Configs))
	if p.Sweep != nil {
		fmt.Printf(" (%d configuration cells and %d sweep cells over %s)", len(p.Configs)-len(p.Sweep.Cells), len(p.Sweep.Cells), strings.Join(p.Sweep.Params, ", "))
	}
	solo := ""
	if s.Solo {
		solo = " and solo"
	}
	fmt.Printf(" x %d neighbour sets%s x %d repetitions\n", len(s.NeighbourSets), solo, s.Repetitions)
	width := 9
	for _, c := range p.Configs {
		width = max(width, len(c))
	}
	for _, c := range p.Configs {
		fmt.Printf("  %-*s %d trials", width, c, per[c])
		if sc := p.Sweep.Cell(c); sc != nil {
			fmt.Printf(" (%s on %s)", sweep.Describe(sc.Settings), sc.Base)
		}
		fmt.Println()
	}
	for i, t := range p.Trials {
		fmt.Printf("%3d %s seed %d\n", i+1, t.ID, t.Spec.Seed)
	}
	est := time.Duration(len(p.Trials)) * (s.Timing.Warmup + s.Timing.Duration + 15*time.Second)
	fmt.Printf("rough time under TCG (about 15 s of boot and setup per trial): %v\n", est.Round(time.Minute))
	return nil
}
