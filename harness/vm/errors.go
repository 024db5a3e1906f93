package vm

import (
	"fmt"
	"strings"
	"time"
)

// PanicError: the guest kernel panicked (or init died) before finishing.
type PanicError struct{ Tail []string }

func (e *PanicError) Error() string {
	return "guest kernel panicked; last console lines:\n  " + strings.Join(e.Tail, "\n  ")
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
