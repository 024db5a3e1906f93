package memcgops

import (
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/vmtest"
)

// Each test boots a fresh guest with the patched kernel (the stock kernel
// for the no-regression baseline) and runs its body there as root.

// no_timer_check: under TCG on a loaded host the boot-time IO-APIC timer
// probe can miss its ticks and panic the guest before the test starts.
const kernelArgs = "no_timer_check"

func patched(timeout time.Duration) vmtest.Options {
	return vmtest.Options{Kernel: "patched", CPUs: 2, MemMB: 1024, Timeout: timeout, KernelArgs: kernelArgs}
}

// A step over memory.high with a configured delay sleeps that long per
// throttle event (+-5%); detached, the stock penalty returns.
func TestHighDelayVM(t *testing.T) {
	if vmtest.Run(t, patched(5*time.Minute)) {
		return
	}
	guestHighDelay(t)
}

func TestBurstCreditVM(t *testing.T) {
	if vmtest.Run(t, patched(4*time.Minute)) {
		return
	}
	guestBurstCredit(t)
}

// A step within its burst credit is not throttled at all, where the stock
// penalty (policy declining, or detached) throttles the same run.
func TestCreditNoThrottleVM(t *testing.T) {
	if vmtest.Run(t, patched(4*time.Minute)) {
		return
	}
	guestCreditNoThrottle(t)
}

// A 500 ms policy delay is a sleep, not reclaim work.
func TestDelayIsSleepVM(t *testing.T) {
	if vmtest.Run(t, patched(4*time.Minute)) {
		return
	}
	guestDelayIsSleep(t)
}

// below_low keeps an idle-then-active interactive step's working set; the
// static memory.low baselines are measured and reported beside it.
func TestProtectionVM(t *testing.T) {
	if vmtest.Run(t, patched(10*time.Minute)) {
		return
	}
	guestProtection(t)
}

// Protection is budgeted and withdrawn when an OOM kill happens next to
// the protected step.
func TestProtectionRevokedVM(t *testing.T) {
	if vmtest.Run(t, patched(8*time.Minute)) {
		return
	}
	guestProtectionRevoked(t)
}

func TestDetachWhileRunningVM(t *testing.T) {
	if vmtest.Run(t, patched(5*time.Minute)) {
		return
	}
	guestDetachWhileRunning(t)
}

func TestLifecycleVM(t *testing.T) {
	if vmtest.Run(t, patched(3*time.Minute)) {
		return
	}
	guestLifecycle(t)
}

// No regression: the same cgroup memory checks pass on the stock kernel and
// on the patched kernel with nothing attached.
func TestMemcgBasicsStockVM(t *testing.T) {
	if vmtest.Run(t, vmtest.Options{Kernel: "stock", CPUs: 2, MemMB: 1024, Timeout: 8 * time.Minute, KernelArgs: kernelArgs}) {
		return
	}
	guestMemcgBasics(t)
}

func TestMemcgBasicsPatchedVM(t *testing.T) {
	if vmtest.Run(t, patched(8*time.Minute)) {
		return
	}
	if err := Supported(); err != nil {
		t.Fatalf("the patched kernel must have memcg_bpf_ops: %v", err)
	}
	guestMemcgBasics(t)
}
