package kernelbuild

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// Root is the build directory under a cache root.
func Root(cacheDir string) string { return filepath.Join(cacheDir, "kernels", "build") }

// Key returns the cache key Build would use for in, without building. It
// hashes the source deb unless SourceSHA256 is given.
func Key(ctx context.Context, in Inputs) (string, error) {
	k, _, err := resolveKey(ctx, in)
	return k, err
}

func resolveKey(ctx context.Context, in Inputs) (string, keyInputs, error) {
	if in.SourceDeb == "" || in.ConfigFragment == "" || in.CacheDir == "" {
		return "", keyInputs{}, errors.New("kernelbuild: SourceDeb, ConfigFragment and CacheDir are required")
	}
	src := in.SourceSHA256
	if src == "" {
		var err error
		if src, err = fsutil.FileSHA256(in.SourceDeb); err != nil {
			return "", keyInputs{}, fmt.Errorf("source package: %w", err)
		}
	}
	patches, err := hashPatches(in.Patches)
	if err != nil {
		return "", keyInputs{}, err
	}
	frag, err := fsutil.FileSHA256(in.ConfigFragment)
	if err != nil {
		return "", keyInputs{}, fmt.Errorf("config fragment: %w", err)
	}
	tc, err := toolchainIdentity(ctx)
	if err != nil {
		return "", keyInputs{}, fmt.Errorf("%w (install the build tools with: %s)", err, aptInstall)
	}
	ki := keyInputs{recipeVersion, src, patches, frag, tc}
	return deriveKey(src, patches, frag, tc), ki, nil
}

// Build returns the kernel for in, compiling it when the cache holds no
// complete entry. Only one build runs at a time per cache (a file lock);
// progress lines go to progress (nil discards them) and the full make
// output to <root>/build.log.
func Build(ctx context.Context, in Inputs, progress io.Writer) (Output, error) {
	if progress == nil {
		progress = io.Discard
	}
	b := &builder{in: in, root: Root(in.CacheDir), progress: progress}
	if err := os.MkdirAll(b.root, 0o755); err != nil {
		return Output{}, err
	}
	if err := checkDeps(ctx); err != nil {
		return Output{}, err
	}
	key, ki, err := resolveKey(ctx, in)
	if err != nil {
		return Output{}, err
	}
	outDir := filepath.Join(b.root, "out", key)
	if out, err := readEntry(outDir, key); err == nil {
		return out, nil
	}
	unlock, err := fsutil.Lock(filepath.Join(b.root, "build.lock"))
	if err != nil {
		return Output{}, err
	}
	defer unlock()
	// Another process may have finished it while we waited for the lock.
	if out, err := readEntry(outDir, key); err == nil {
		return out, nil
	} else if !isMissing(err) {
		b.logf("cache entry unusable (%v); rebuilding", err)
	}

	start := time.Now()
	need := uint64(warmBuildBytes)
	if st, err := readState(b.root); err != nil || st.SourceSHA256 != ki.Source {
		need = coldBuildBytes
	}
	if err := checkDisk(b.root, need); err != nil {
		return Output{}, err
	}
	st, err := b.ensureSource(ctx, ki.Source)
	if err != nil {
		return Output{}, err
	}
	st, err = b.syncPatches(ctx, st, ki.Patches, in.Patches)
	var reset *resetError
	if errors.As(err, &reset) {
		b.logf("%v; unpacking a clean tree", err)
		if st, err = b.ensureSource(ctx, ki.Source); err == nil {
			st, err = b.syncPatches(ctx, st, ki.Patches, in.Patches)
		}
	}
	if err != nil {
		return Output{}, err
	}
	src := filepath.Join(b.root, "src", st.SrcDir)
	obj := filepath.Join(b.root, "obj")
	if err := b.configure(ctx, src, obj); err != nil {
		return Output{}, err
	}
	if err := b.make(ctx, src, obj); err != nil {
		return Output{}, err
	}
	m := marker{Key: key, Inputs: ki, BuildSeconds: time.Since(start).Seconds(), Finished: time.Now().UTC()}
	strip := func(from, to string) error {
		// Debug info is only needed to produce BTF; .BTF survives the strip.
		return b.run(ctx, b.root, "objcopy", "--strip-debug", from, to)
	}
	if err := writeEntry(outDir+".tmp", outDir, m, filepath.Join(obj, "arch/x86/boot/bzImage"), filepath.Join(obj, "vmlinux"), strip); err != nil {
		return Output{}, diskHint(err)
	}
	b.logf("done in %s: %s", time.Since(start).Round(time.Second), outDir)
	return readEntry(outDir, key)
}

type builder struct {
	in       Inputs
	root     string
	progress io.Writer
	mu       sync.Mutex
}

func (b *builder) logf(format string, a ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fmt.Fprintf(b.progress, "kernelbuild: "+format+"\n", a...)
}

func (b *builder) env() []string {
	return append(os.Environ(), "CCACHE_DIR="+filepath.Join(b.root, "ccache"), "LC_ALL=C")
}

// run executes a command, returning its output in the error when it fails.
func (b *builder) run(ctx context.Context, dir, name string, args ...string) error {
	out, err := b.output(ctx, dir, name, args...)
	if err != nil {
		return fmt.Errorf("%s: %v: %s", name, err, lastLines(out, 20))
	}
	return nil
}

func (b *builder) output(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = b.env()
	out, err := cmd.CombinedOutput()
	if err != nil && bytes.Contains(out, []byte("No space left on device")) {
		err = fmt.Errorf("disk full under %s (No space left on device): free space or point AGENTCGROUP_CACHE at a larger disk", dir)
	}
	return string(out), err
}

// configure writes obj/.config from allnoconfig, the kernel's KVM guest
// fragment and ours, then checks every value we asked for took effect: a
// dependency Kconfig silently drops would otherwise surface as a guest
// that cannot mount cgroup2 or attach BPF.
func (b *builder) configure(ctx context.Context, src, obj string) error {
	b.logf("configuring (allnoconfig + kvm_guest.config + %s)", filepath.Base(b.in.ConfigFragment))
	if err := os.MkdirAll(obj, 0o755); err != nil {
		return err
	}
	frag, err := filepath.Abs(b.in.ConfigFragment)
	if err != nil {
		return err
	}
	mk := []string{"O=" + obj, "ARCH=x86_64"}
	steps := [][]string{
		append([]string{"make"}, append(mk, "allnoconfig")...),
		{"scripts/kconfig/merge_config.sh", "-m", "-O", obj, filepath.Join(obj, ".config"), "kernel/configs/kvm_guest.config", frag},
		append([]string{"make"}, append(mk, "olddefconfig")...),
	}
	for _, s := range steps {
		if err := b.run(ctx, src, s[0], s[1:]...); err != nil {
			return fmt.Errorf("configuring the kernel: %w", err)
		}
	}
	want, err := os.ReadFile(frag)
	if err != nil {
		return err
	}
	got, err := os.ReadFile(filepath.Join(obj, ".config"))
	if err != nil {
		return err
	}
	if bad := configMismatches(string(want), string(got)); len(bad) > 0 {
		return fmt.Errorf("config fragment %s: %d value(s) did not survive Kconfig (a missing dependency or an option this source does not have): %s",
			b.in.ConfigFragment, len(bad), strings.Join(bad, "; "))
	}
	return nil
}

// configMismatches lists the fragment's CONFIG_ assignments that the final
// .config does not carry. "=n" is satisfied by absence or "is not set".
func configMismatches(fragment, config string) []string {
	have := map[string]string{}
	for _, l := range strings.Split(config, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && strings.HasPrefix(k, "CONFIG_") {
			have[k] = v
		}
	}
	var bad []string
	for _, l := range strings.Split(fragment, "\n") {
		l = strings.TrimSpace(l)
		k, v, ok := strings.Cut(l, "=")
		if !ok || !strings.HasPrefix(k, "CONFIG_") {
			continue
		}
		g, set := have[k]
		switch {
		case v == "n" && set && g != "n":
			bad = append(bad, fmt.Sprintf("%s wanted n, got %s", k, g))
		case v != "n" && g != v:
			if !set {
				g = "unset"
			}
			bad = append(bad, fmt.Sprintf("%s wanted %s, got %s", k, v, g))
		}
	}
	return bad
}

// groupWrapper runs "$@" and, on SIGTERM, signals its whole process group.
const groupWrapper = `trap 'trap - TERM; kill -TERM 0' TERM; "$@" & wait $!`

// groupCommand runs argv so that nothing it starts outlives the builder.
// A make (or sub-make) left behind would race the next build, which holds
// the lock once we are gone, in the same object directory. The wrapper
// shell leads its own process group and takes the whole group down when it
// gets SIGTERM: on cancellation, and on our death through Pdeathsig.
func groupCommand(ctx context.Context, dir string, env []string, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "sh", append([]string{"-c", groupWrapper, "sh"}, argv...)...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	return cmd
}

// make compiles bzImage (and vmlinux with BTF), logging everything to
// build.log and a progress line every 15 seconds.
func (b *builder) make(ctx context.Context, src, obj string) error {
	jobs := b.in.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU() + 1
	}
	logPath := filepath.Join(b.root, "build.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	b.logf("make -j%d bzImage (a cold build takes about 8 minutes on 2 cores; full log %s)", jobs, logPath)
	cmd := groupCommand(ctx, src, b.env(),
		"make", "O="+obj, "ARCH=x86_64", "CC=ccache gcc", "PAHOLE=pahole", fmt.Sprintf("-j%d", jobs), "bzImage")
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	start := time.Now()
	var tail []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		n, last, lastReport := 0, "", time.Now()
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if f := strings.Fields(line); len(f) == 2 && (f[0] == "CC" || f[0] == "AS" || f[0] == "LD") {
				n++
				last = f[1]
			}
			if tail = append(tail, line); len(tail) > 40 {
				tail = tail[1:]
			}
			if time.Since(lastReport) >= 15*time.Second {
				b.logf("%d objects built, last %s (%s)", n, last, time.Since(start).Round(time.Second))
				lastReport = time.Now()
			}
		}
		io.Copy(io.Discard, pr)
	}()
	err = cmd.Run()
	pw.Close()
	<-done
	if err != nil {
		text := strings.Join(tail, "\n")
		if strings.Contains(text, "No space left on device") {
			return fmt.Errorf("kernel build failed: disk full under %s (No space left on device): free space or point AGENTCGROUP_CACHE at a larger disk", b.root)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("kernel build interrupted: %w (the object directory is kept; the next build resumes)", ctx.Err())
		}
		return fmt.Errorf("kernel build failed (%v); last lines of %s:\n%s", err, logPath, text)
	}
	b.logf("compiled in %s", time.Since(start).Round(time.Second))
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func diskHint(err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w: disk full; free space or point AGENTCGROUP_CACHE at a larger disk", err)
	}
	return err
}

// resetError says the source tree no longer matches its recorded state
// and was dropped; Build unpacks a clean one and retries once.
type resetError struct{ cause error }

func (e *resetError) Error() string { return e.cause.Error() }
