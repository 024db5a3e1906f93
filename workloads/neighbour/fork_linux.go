package neighbour

import (
	"syscall"
	"unsafe"
)

// forkExit clones the process; the child sleeps hold (if non-nil) and
// exits. The child runs no Go code after the raw clone returns, only
// system calls, so the runtime's state in the copied address space never
// matters (the discipline the runtime itself keeps between fork and exec).
//
//go:nosplit
//go:norace
func forkExit(hold *syscall.Timespec) (int, syscall.Errno) {
	pid, _, err := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if err != 0 {
		return 0, err
	}
	if pid == 0 {
		if hold != nil {
			syscall.RawSyscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(hold)), 0, 0)
		}
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	}
	return int(pid), 0
}
