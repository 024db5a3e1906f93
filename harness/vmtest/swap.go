package vmtest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// ZramSwap gives the guest mb MiB of zram swap (once per boot; a later
// call keeps the first size). Reclaim can then move anonymous pages, which
// is what memory.high throttling, protection and thrashing are about.
// zram stores no zero-filled page: a workload meant to be swapped writes
// non-zero data.
func ZramSwap(tb testing.TB, mb int) {
	tb.Helper()
	if _, err := os.Stat("/sys/block/zram0"); err != nil {
		if out, err := exec.Command("modprobe", "zram").CombinedOutput(); err != nil {
			tb.Fatalf("no zram device and modprobe zram failed: %v: %s", err, out)
		}
	}
	if b, _ := os.ReadFile("/proc/swaps"); strings.Contains(string(b), "zram0") {
		return
	}
	if err := os.WriteFile("/sys/block/zram0/disksize", []byte(fmt.Sprintf("%dM", mb)), 0o644); err != nil {
		tb.Fatal(err)
	}
	for _, c := range [][]string{{"mkswap", "/dev/zram0"}, {"swapon", "/dev/zram0"}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			tb.Fatalf("%v: %v: %s", c, err, out)
		}
	}
}
