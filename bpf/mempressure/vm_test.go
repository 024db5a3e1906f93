package mempressure

import (
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/vmtest"
)

// ranInVM boots a guest that runs the calling test and reports true on the
// host (the guest's verdict is the test's); in the guest it returns false
// and the test body runs as root. no_timer_check: the guest kernel's
// IO-APIC timer check can fail under TCG on a loaded host and panic.
func ranInVM(t testing.TB) bool { return ranInVMFor(t, 5*time.Minute) }

func ranInVMFor(t testing.TB, timeout time.Duration) bool {
	return vmtest.Run(t, vmtest.Options{CPUs: 2, MemMB: 1024, Timeout: timeout, KernelArgs: "no_timer_check"})
}
