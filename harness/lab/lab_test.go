package lab_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/lab"
	"github.com/agentcgroup/agentcgroup/harness/vm"
	"github.com/agentcgroup/agentcgroup/harness/vmtest"
)

func exec(t *testing.T, j lab.Job) (*lab.Result, string, error) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	var out bytes.Buffer
	j.Stdout = &out
	if j.Timeout == 0 {
		j.Timeout = 3 * time.Minute
	}
	res, err := lab.Exec(context.Background(), j)
	return res, out.String(), err
}

// One boot checks what every later test relies on: sched_ext available,
// cgroup2 controllers, files back from /out, exit codes passed through.
func TestGuestBasics(t *testing.T) {
	outDir := t.TempDir()
	script := `cat /sys/kernel/sched_ext/state
cat /sys/fs/cgroup/cgroup.controllers
cat /sys/fs/cgroup/cgroup.subtree_control
mkdir -p /out/sub && echo payload > /out/sub/file
test -d /sys/fs/bpf && test -d /sys/kernel/tracing/events && echo mounts-ok
test -e /sys/block/zram0 && echo zram-ok
exit 7`
	res, out, err := exec(t, lab.Job{Argv: []string{"sh", "-c", script}, OutDir: outDir})
	if err != nil {
		t.Fatalf("%v\noutput:\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 5 {
		t.Fatalf("short output:\n%s", out)
	}
	if lines[0] != "disabled" {
		t.Errorf("/sys/kernel/sched_ext/state = %q, want disabled (sched_ext available, no scheduler loaded)", lines[0])
	}
	for _, c := range []string{"cpu", "memory", "pids"} {
		if !slices.Contains(strings.Fields(lines[1]), c) {
			t.Errorf("controller %s missing from cgroup.controllers %q", c, lines[1])
		}
		if !slices.Contains(strings.Fields(lines[2]), c) {
			t.Errorf("controller %s not enabled at the root: %q", c, lines[2])
		}
	}
	for _, want := range []string{"mounts-ok", "zram-ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("guest did not print %s:\n%s", want, out)
		}
	}
	if res.ExitCode != 7 {
		t.Errorf("exit code %d, want 7", res.ExitCode)
	}
	b, err := os.ReadFile(filepath.Join(outDir, "sub", "file"))
	if err != nil || string(b) != "payload\n" {
		t.Errorf("/out/sub/file on the host: %q, %v", b, err)
	}
	if res.Accel != "kvm" && res.Accel != "tcg" {
		t.Errorf("accelerator %q not reported", res.Accel)
	}
	t.Logf("accel %s, boot-to-command %v", res.Accel, res.BootToCommand)
}

func TestGuestCommandNotFound(t *testing.T) {
	res, out, err := exec(t, lab.Job{Argv: []string{"no-such-command", "arg"}})
	var ge *vm.GuestError
	if !errors.As(err, &ge) {
		t.Fatalf("want a GuestError, got %v (output %q)", err, out)
	}
	if !strings.Contains(ge.Error(), "command not found in the guest: no-such-command") {
		t.Errorf("error does not name the command: %v", ge)
	}
	if res.ExitCode != 127 || ge.ExitCode != 127 {
		t.Errorf("exit code %d / %d, want 127", res.ExitCode, ge.ExitCode)
	}
}

func TestGuestPanicIsReported(t *testing.T) {
	start := time.Now()
	_, out, err := exec(t, lab.Job{Argv: []string{"sh", "-c", "echo c > /proc/sysrq-trigger; sleep 600"}})
	var pe *vm.PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("want a PanicError, got %v (output %q)", err, out)
	}
	if !strings.Contains(strings.Join(pe.Tail, "\n"), "sysrq") {
		t.Errorf("console tail does not show the cause:\n%s", strings.Join(pe.Tail, "\n"))
	}
	if d := time.Since(start); d > 2*time.Minute {
		t.Errorf("panic took %v to report; it should not wait for the timeout", d)
	}
}

func TestGuestHangIsKilled(t *testing.T) {
	timeout := 40 * time.Second
	start := time.Now()
	_, out, err := exec(t, lab.Job{Argv: []string{"sleep", "600"}, Timeout: timeout})
	var he *vm.HangError
	if !errors.As(err, &he) {
		t.Fatalf("want a HangError, got %v (output %q)", err, out)
	}
	if d := time.Since(start); d > timeout+30*time.Second {
		t.Errorf("hang detected after %v; timeout was %v", d, timeout)
	}
	if len(he.Tail) == 0 {
		t.Error("no console tail in the hang report")
	}
}

// The vmtest helper itself: this body runs in the guest as PID 1's child.
func TestVMTestRunsInGuest(t *testing.T) {
	if vmtest.Run(t, vmtest.Options{CPUs: 2, MemMB: 512}) {
		return
	}
	if os.Geteuid() != 0 {
		t.Errorf("euid %d, want root", os.Geteuid())
	}
	comm, _ := os.ReadFile("/proc/1/comm")
	if strings.TrimSpace(string(comm)) != "init" {
		t.Errorf("PID 1 is %q, want our init", comm)
	}
	if b, _ := os.ReadFile("/proc/cpuinfo"); strings.Count(string(b), "processor\t:") != 2 {
		t.Error("guest does not have the 2 CPUs asked for")
	}
	if err := os.WriteFile("/out/marker", []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkBootToCommand measures qemu start -> job start. Run it with
// -benchtime 5x (make bench-vm); it reports the median, not the mean.
func BenchmarkBootToCommand(b *testing.B) {
	var boots []time.Duration
	accel := ""
	for i := 0; i < b.N; i++ {
		res, err := lab.Exec(context.Background(), lab.Job{Argv: []string{"true"}, Timeout: 3 * time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		boots = append(boots, res.BootToCommand)
		accel = res.Accel
	}
	slices.Sort(boots)
	b.ReportMetric(boots[len(boots)/2].Seconds(), "s-median-boot")
	b.ReportMetric(boots[len(boots)-1].Seconds(), "s-max-boot")
	b.Logf("accelerator %s, boot-to-command sorted: %v", accel, boots)
}
