package daemon

import (
	"os"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/vmtest"
)

// ranInVM boots a guest that runs the calling test and reports true on the
// host (the guest's verdict is the test's); in the guest it returns false
// and the test body runs as root. no_timer_check: the guest kernel's
// IO-APIC timer check can fail under TCG on a loaded host and panic.
// AGENTCGROUP_DAEMON_TEST_KERNEL=patched runs these guests on the patched
// kernel, where the daemon's auto memory mode picks full.
func ranInVM(t testing.TB) bool {
	return vmtest.Run(t, vmtest.Options{Kernel: os.Getenv("AGENTCGROUP_DAEMON_TEST_KERNEL"), CPUs: 2, MemMB: 1024,
		Timeout: 5 * time.Minute, KernelArgs: "no_timer_check"})
}
