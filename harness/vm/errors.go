package vm

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// PanicError: the guest kernel panicked (or init died) before finishing.
type PanicError struct {
	Oops string // the first "Oops:" line, which a long backtrace can push out of Tail
	Tail []string
}

func (e *PanicError) Error() string {
	msg := "guest kernel panicked"
	if e.Oops != "" {
		msg += " (" + strings.TrimSpace(e.Oops) + ")"
	}
	return msg + "; last console lines:\n  " + strings.Join(e.Tail, "\n  ")
}

// HangError: the guest did not finish within the timeout and was killed.
type HangError struct {
	Timeout time.Duration
	Tail    []string
}

func (e *HangError) Error() string {
	return fmt.Sprintf("guest did not finish within %v and was killed (raise --timeout if the job is just slow); last console lines:\n  %s",
		e.Timeout, strings.Join(e.Tail, "\n  "))
}

// CrashError: qemu exited without the guest reporting completion, and the
// console shows no panic (qemu failed to start, or the guest reset).
type CrashError struct {
	QemuErr string
	Tail    []string
}

func (e *CrashError) Error() string {
	msg := "guest stopped without reporting completion"
	if e.QemuErr != "" {
		msg += "; qemu said: " + e.QemuErr
	}
	return msg + "; last console lines:\n  " + strings.Join(e.Tail, "\n  ")
}

// GuestError: the guest booted but could not run the job (e.g. command not
// found). ExitCode is what a shell would return.
type GuestError struct {
	Msg      string
	ExitCode int
}

func (e *GuestError) Error() string { return e.Msg }

// EmulatorFlake recognises a guest death caused by the emulator rather than
// the code under test, so callers can retry once and say so. The one known
// case: multi-threaded TCG occasionally runs a stale translation of kernel
// text that was just live-patched (static keys and alternatives flipped at
// boot, or when a sched_ext scheduler loads or unloads), which the guest
// reports as an int3 Oops. With KVM this does not occur.
func EmulatorFlake(err error) (string, bool) {
	var pe *PanicError
	if !errors.As(err, &pe) {
		return "", false
	}
	for _, l := range append([]string{pe.Oops}, pe.Tail...) {
		if strings.Contains(l, "Oops: int3") {
			return "int3 Oops after kernel text patching under multi-threaded TCG", true
		}
	}
	return "", false
}
