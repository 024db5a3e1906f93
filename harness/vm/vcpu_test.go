package vm

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeThread writes a fake /proc/<pid>/task/<tid> with comm and schedstat.
func writeThread(t *testing.T, root string, pid, tid int, comm string, run, wait int64) {
	t.Helper()
	dir := filepath.Join(root, fmt.Sprint(pid), "task", fmt.Sprint(tid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "comm"), []byte(comm+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "schedstat"), []byte(fmt.Sprintf("%d %d 42\n", run, wait)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Only vCPU threads count, from the mark to the end; readings after the
// end (the guest writing results, powering off) are not the job's.
func TestVCPUSampler(t *testing.T) {
	root := t.TempDir()
	const pid = 100
	ms := int64(time.Millisecond)
	writeThread(t, root, pid, 100, "qemu-system-x86", 5000*ms, 900*ms)
	writeThread(t, root, pid, 101, "CPU 0/TCG", 1000*ms, 100*ms)
	writeThread(t, root, pid, 102, "CPU 1/TCG", 2000*ms, 200*ms)

	s := &vcpuSampler{procRoot: root, pid: pid}
	if v := s.total(); v != (VCPUTime{}) {
		t.Errorf("before the mark: %+v, want nothing", v)
	}
	s.mark()
	writeThread(t, root, pid, 100, "qemu-system-x86", 9000*ms, 5000*ms)
	writeThread(t, root, pid, 101, "CPU 0/TCG", 1800*ms, 300*ms)
	writeThread(t, root, pid, 102, "CPU 1/TCG", 2600*ms, 400*ms)
	s.sample()
	writeThread(t, root, pid, 101, "CPU 0/TCG", 1900*ms, 500*ms)
	s.end()
	writeThread(t, root, pid, 101, "CPU 0/TCG", 9900*ms, 9500*ms)
	s.sample()

	got := s.total()
	want := VCPUTime{Run: 1500 * time.Millisecond, Wait: 600 * time.Millisecond, Threads: 2}
	if got != want {
		t.Errorf("total %+v, want %+v", got, want)
	}
	if share := got.WaitShare(); share < 0.2857 || share > 0.2858 {
		t.Errorf("wait share %.4f, want 600/2100", share)
	}
}

func TestParseSchedstat(t *testing.T) {
	st, err := parseSchedstat("123 456 7\n")
	if err != nil || st.run != 123 || st.wait != 456 {
		t.Errorf("parse: %+v, %v", st, err)
	}
	for _, bad := range []string{"", "12", "x 1 2", "1 y 2"} {
		if _, err := parseSchedstat(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	for comm, want := range map[string]bool{"CPU 0/TCG": true, "CPU 12/KVM\n": true, "qemu-system-x86": false, "CPU 0": false} {
		if isVCPUThread(comm) != want {
			t.Errorf("isVCPUThread(%q) = %v", comm, !want)
		}
	}
}
