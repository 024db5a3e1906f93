// Package lab is the one call the rest of the harness needs to run
// something in a guest: it ensures the pinned kernel and the guest image,
// picks the accelerator, boots, and brings /out back.
package lab

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/guest"
	"github.com/agentcgroup/agentcgroup/harness/guestpkg"
	"github.com/agentcgroup/agentcgroup/harness/initramfs"
	"github.com/agentcgroup/agentcgroup/harness/kernel"
	"github.com/agentcgroup/agentcgroup/harness/vm"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// Job is one command to run in a fresh guest.
type Job struct {
	Kernel    string            // name in vmimages/kernels.toml; default "stock"
	MemMB     int               // default 1024
	CPUs      int               // default 2
	Argv      []string          // the command, looked up on the guest's PATH
	Env       []string          // extra environment
	Files     map[string][]byte // guest path -> content
	HostFiles map[string]string // guest path -> host file to copy in
	OutDir    string            // the guest's /out is unpacked here; "" discards it
	Timeout   time.Duration     // default 5 minutes; the guest is killed after it
	Stdout    io.Writer         // job output; nil discards
	Log       io.Writer         // harness progress (fetches, builds); nil discards
	// ConsoleLog, when set, receives a copy of the guest's kernel console.
	ConsoleLog string
	// KernelArgs are appended to the guest kernel's command line.
	KernelArgs string
	// Packages are Debian packages whose programs (with their shared
	// libraries and the dynamic loader) are added to the guest, from the
	// userland suite of vmimages/kernels.toml; see harness/guestpkg.
	Packages []string
}

// Result describes a finished boot.
type Result struct {
	ExitCode      int
	Accel         string // "kvm" or "tcg"
	Kernel        string // name and release
	BootToCommand time.Duration
	Run           time.Duration
	Total         time.Duration
	ConsoleLog    string
	Warnings      []string
	// VCPU is how long the vCPU threads ran and waited for a host CPU
	// while the job ran (zero when it never started).
	VCPU vm.VCPUTime
}

// Exec boots a guest, runs j and returns its exit code. A job that exits
// non-zero is not an error; a guest that cannot run it is.
func Exec(ctx context.Context, j Job) (*Result, error) {
	if j.Kernel == "" {
		j.Kernel = "stock"
	}
	if j.MemMB == 0 {
		j.MemMB = 1024
	}
	if j.CPUs == 0 {
		j.CPUs = 2
	}
	if j.Timeout == 0 {
		j.Timeout = 5 * time.Minute
	}
	if len(j.Argv) == 0 {
		return nil, errors.New("no command to run")
	}
	if err := vm.Available(); err != nil {
		return nil, err
	}
	env, err := Setup(ctx, j.Kernel, j.Log)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "agentcgroup-vm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	jobJSON, err := json.Marshal(guest.Job{Argv: j.Argv, Env: j.Env})
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{guest.JobPath: jobJSON}
	for p, b := range j.Files {
		files[p] = b
	}
	var extra []string
	if len(j.Packages) > 0 {
		set, err := env.Packages(ctx, j.Packages, j.Log)
		if err != nil {
			return nil, err
		}
		extra = append(extra, set.Archive)
	}
	initrd := filepath.Join(work, "initrd.cpio")
	if err := writeInitrd(initrd, env.BaseImage, extra, files, j.HostFiles); err != nil {
		return nil, err
	}
	accel, err := env.Accel(ctx)
	if err != nil {
		return nil, err
	}
	cfg := vm.Config{
		Kernel: env.bootImage(), Initrd: initrd,
		MemMB: j.MemMB, CPUs: j.CPUs, Accel: accel,
		Timeout: j.Timeout, Stdout: j.Stdout, WorkDir: work, Append: j.KernelArgs,
	}
	vres, runErr := vm.Run(ctx, cfg)
	var warnings []string
	// Each fresh boot after the fault is independent of the last (it
	// strikes in a few percent of boots, more on a loaded host), so three
	// tries make a job fail for it only when something else is wrong too.
	for boot := 1; boot <= emulatorRetries; boot++ {
		why, ok := vm.EmulatorFlake(runErr)
		if !ok {
			break
		}
		// Not the job's doing: say so, and give it a fresh boot.
		w := fmt.Sprintf("guest died of a known emulator fault (%s); booted it again (%d of %d)", why, boot, emulatorRetries)
		warnings = append(warnings, w)
		if j.Log != nil {
			fmt.Fprintln(j.Log, "lab: "+w)
		}
		for _, f := range []string{"console.log", "status.jsonl", "out.tar"} {
			os.Remove(filepath.Join(work, f))
		}
		vres, runErr = vm.Run(ctx, cfg)
	}
	res := &Result{Accel: accel, Kernel: env.Kernel.Name + " " + env.Kernel.Release, Warnings: warnings}
	if vres != nil {
		res.ExitCode, res.BootToCommand, res.Run, res.Total = vres.ExitCode, vres.BootToCommand, vres.Run, vres.Total
		res.VCPU = vres.VCPU
		res.Warnings = append(res.Warnings, vres.Warnings...)
		if j.ConsoleLog != "" {
			if err := fsutil.CopyFile(vres.ConsoleLog, j.ConsoleLog); err != nil && runErr == nil {
				runErr = err
			}
			res.ConsoleLog = j.ConsoleLog
		}
		if j.OutDir != "" && vres.OutComplete {
			if err := untar(vres.OutTar, j.OutDir); err != nil && runErr == nil {
				runErr = fmt.Errorf("unpacking the guest's /out: %w", err)
			}
		}
	}
	return res, runErr
}

// emulatorRetries is how many fresh boots a job gets after a known
// emulator fault; each is reported among the result's warnings.
const emulatorRetries = 3

// Env is a kernel and base image ready to boot, shared by every boot of a
// process (building the image once).
type Env struct {
	Kernel    *kernel.Image
	BaseImage string
	CacheDir  string
	Root      string
	pins      *kernel.Pins
	accelOnce sync.Once
	accel     string
	accelErr  error
	pkgMu     sync.Mutex
	pkgSets   map[string]*guestpkg.Set // by sorted package names
}

var (
	envMu sync.Mutex
	envs  = map[string]*Env{}
)

// Setup fetches the named kernel and builds the base image (both cached).
func Setup(ctx context.Context, kernelName string, log io.Writer) (*Env, error) {
	envMu.Lock()
	defer envMu.Unlock()
	if e, ok := envs[kernelName]; ok {
		return e, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	cache, err := kernel.CacheDir()
	if err != nil {
		return nil, err
	}
	pins, err := kernel.LoadPins(filepath.Join(root, "vmimages", "kernels.toml"))
	if err != nil {
		return nil, err
	}
	f := &kernel.Fetcher{Pins: pins, CacheDir: cache, Progress: log, Build: builderFor(root)}
	img, err := f.Ensure(ctx, kernelName)
	if err != nil {
		return nil, err
	}
	base, err := initramfs.Build(ctx, initramfs.Recipe{RepoRoot: root, Modules: img.Modules, CacheDir: cache, Log: log})
	if err != nil {
		return nil, err
	}
	e := &Env{Kernel: img, BaseImage: base, CacheDir: cache, Root: root, pins: pins}
	envs[kernelName] = e
	return e, nil
}

// Packages returns the guest archive of the named Debian packages (see
// harness/guestpkg), resolving them once per process: the package lists
// are read once, so every boot of a run gets the same files.
func (e *Env) Packages(ctx context.Context, names []string, log io.Writer) (*guestpkg.Set, error) {
	norm, err := guestpkg.Normalize(names)
	if err != nil {
		return nil, err
	}
	key := strings.Join(norm, " ")
	e.pkgMu.Lock()
	defer e.pkgMu.Unlock()
	if s, ok := e.pkgSets[key]; ok {
		return s, nil
	}
	suiteName, suite, err := e.pins.Userland()
	if err != nil {
		return nil, err
	}
	s, err := guestpkg.Ensure(ctx, guestpkg.Request{Names: norm, SuiteName: suiteName, Suite: suite, CacheDir: e.CacheDir, Log: log})
	if err != nil {
		return nil, err
	}
	if e.pkgSets == nil {
		e.pkgSets = map[string]*guestpkg.Set{}
	}
	e.pkgSets[key] = s
	return s, nil
}

// bootImage prefers the PVH kernel (no in-guest decompression);
// AGENTBENCH_BOOT=bzimage forces the compressed image, to compare.
func (e *Env) bootImage() string {
	if e.Kernel.PVH != "" && os.Getenv("AGENTBENCH_BOOT") != "bzimage" {
		return e.Kernel.PVH
	}
	return e.Kernel.BzImage
}

// builderFor returns the compiler for kernels built from source (see build.go).
var builderFor func(repoRoot string) kernel.Builder

// RepoRoot finds the module root from the working directory upwards.
func RepoRoot() (string, error) {
	if r := os.Getenv("AGENTCGROUP_ROOT"); r != "" {
		return r, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/agentcgroup/agentcgroup\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("not inside the agentcgroup repository (from %s); run from the checkout or set AGENTCGROUP_ROOT", dir)
		}
	}
}

// writeInitrd concatenates the base image, any extra archives (guest
// packages) and the job's archive; the kernel unpacks them in that order,
// a later member replacing an earlier one at the same path.
func writeInitrd(path, base string, extra []string, files map[string][]byte, hostFiles map[string]string) error {
	job, err := initramfs.JobArchive(files, hostFiles)
	if err != nil {
		return err
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	for _, p := range append([]string{base}, extra...) {
		in, err := os.Open(p)
		if err != nil {
			out.Close()
			return err
		}
		_, err = io.Copy(out, in)
		in.Close()
		if err != nil {
			out.Close()
			return err
		}
	}
	if _, err := out.Write(job); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// untar unpacks the guest's /out into dir, refusing paths that escape it.
func untar(tarPath, dir string) error {
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			w, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, os.FileMode(h.Mode)&0o777|0o600)
			if err != nil {
				return err
			}
			if _, err := io.Copy(w, tr); err != nil {
				w.Close()
				return err
			}
			if err := w.Close(); err != nil {
				return err
			}
		case tar.TypeSymlink:
			os.Symlink(h.Linkname, p)
		}
	}
}
