// Package vmtest runs a Go test inside a fresh guest. The host side boots a
// VM with the test binary itself inside and runs just that test there; the
// guest side returns false so the test body runs as root in the guest.
//
//	func TestX(t *testing.T) {
//		if vmtest.Run(t, vmtest.Options{}) {
//			return
//		}
//		// in the guest
//	}
package vmtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/initramfs"
	"github.com/agentcgroup/agentcgroup/harness/lab"
	"github.com/agentcgroup/agentcgroup/harness/vm"
)

// InGuestEnv is set in the guest so the test binary knows where it runs.
const InGuestEnv = "AGENTCGROUP_IN_GUEST"

// Options size the guest. Zero values take lab's defaults (stock kernel,
// 1024 MiB, 2 CPUs) and a 5 minute timeout.
type Options struct {
	Kernel  string
	MemMB   int
	CPUs    int
	Timeout time.Duration
	Env     []string
	// KernelArgs are appended to the guest kernel's command line.
	KernelArgs string
	// Packages are Debian packages whose programs are added to the
	// guest (lab.Job.Packages); the host fetches them on first use.
	Packages []string
}

// InGuest reports whether this process runs inside a test guest.
func InGuest() bool { return os.Getenv(InGuestEnv) == "1" }

var (
	outMu   sync.Mutex
	outDirs = map[string]string{}
)

// OutDir returns where the guest's /out was copied for the test named by tb
// (host side, after Run).
func OutDir(tb testing.TB) string {
	outMu.Lock()
	defer outMu.Unlock()
	return outDirs[tb.Name()]
}

// Run executes the calling test or benchmark in a guest. It returns true
// on the host, where the guest's verdict has become tb's, and false in the
// guest. With -short, VM tests are skipped (and say so).
func Run(tb testing.TB, o Options) bool {
	tb.Helper()
	if InGuest() {
		return false
	}
	if testing.Short() {
		tb.Skip("boots a VM; skipped with -short")
	}
	if err := vm.Available(); err != nil {
		tb.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	if err := initramfs.CheckStatic(exe); err != nil {
		tb.Fatalf("%v: run tests with CGO_ENABLED=0 (the Makefile does)", err)
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	guestExe := "/usr/local/bin/" + filepath.Base(exe)
	argv := []string{guestExe, "-test.v", "-test.count=1", "-test.timeout=" + o.Timeout.String()}
	b, isBench := tb.(*testing.B)
	if isBench {
		argv = append(argv, "-test.run=^$", "-test.bench="+pattern(tb.Name()), "-test.benchtime=1x")
	} else {
		argv = append(argv, "-test.run="+pattern(tb.Name()))
	}
	out := tb.TempDir()
	outMu.Lock()
	outDirs[tb.Name()] = out
	outMu.Unlock()

	lw := &lineWriter{log: func(s string) { tb.Log("guest: " + s) }}
	if isBench {
		lw.benchLine = regexp.MustCompile(`^` + regexp.QuoteMeta(strings.SplitN(tb.Name(), "/", 2)[0]))
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout+2*time.Minute)
	defer cancel()
	job := lab.Job{
		Kernel: o.Kernel, MemMB: o.MemMB, CPUs: o.CPUs, Timeout: o.Timeout,
		Argv:       argv,
		Env:        append([]string{InGuestEnv + "=1"}, o.Env...),
		HostFiles:  map[string]string{guestExe: exe},
		OutDir:     out,
		Stdout:     lw,
		KernelArgs: o.KernelArgs,
		Packages:   o.Packages,
	}
	if len(o.Packages) > 0 {
		// Fetching packages the first time takes a while; say what.
		pl := &lineWriter{log: func(s string) { tb.Log("lab: " + s) }}
		defer pl.flush()
		job.Log = pl
	}
	// lab.Exec boots once more, and says so, if the emulator itself kills
	// the guest (vm.EmulatorFlake).
	res, err := lab.Exec(ctx, job)
	lw.flush()
	if res != nil {
		for _, w := range res.Warnings {
			tb.Log("guest: " + w)
		}
	}
	if err != nil {
		var ge *vm.GuestError
		if errors.As(err, &ge) {
			tb.Fatalf("guest could not run the test: %v", err)
		}
		tb.Fatalf("guest: %v", err)
	}
	tb.Logf("guest: kernel %s, accel %s, boot-to-command %v, run %v",
		res.Kernel, res.Accel, res.BootToCommand.Round(time.Millisecond), res.Run.Round(time.Millisecond))
	if isBench {
		reportBench(b, lw.bench)
	}
	if res.ExitCode != 0 {
		tb.Fatalf("test failed in the guest (exit %d); its output is above", res.ExitCode)
	}
	return true
}

// pattern anchors every level of a (sub)test name for -test.run.
func pattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// reportBench re-reports the guest benchmark's metrics on the host, so
// benchstat sees the guest's numbers rather than the boot's.
func reportBench(b *testing.B, line string) {
	if line == "" {
		b.Fatal("the guest printed no benchmark result")
	}
	f := strings.Fields(line)
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			continue
		}
		b.ReportMetric(v, f[i+1])
	}
}

// lineWriter turns streamed guest output into test log lines.
type lineWriter struct {
	mu        sync.Mutex
	buf       []byte
	log       func(string)
	benchLine *regexp.Regexp
	bench     string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		w.line(strings.TrimRight(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
}

func (w *lineWriter) line(s string) {
	// A result line: "BenchmarkX-2  <iterations>  <value> <unit> ...".
	if f := strings.Fields(s); w.benchLine != nil && w.benchLine.MatchString(s) && len(f) >= 4 {
		if _, err := strconv.Atoi(f[1]); err == nil {
			w.bench = s
		}
	}
	w.log(s)
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line(string(w.buf))
		w.buf = nil
	}
}

var _ io.Writer = (*lineWriter)(nil)

// Must fails the test with err's message; a small helper for guest bodies.
func Must(tb testing.TB, err error, what string) {
	tb.Helper()
	if err != nil {
		tb.Fatal(fmt.Errorf("%s: %w", what, err))
	}
}
