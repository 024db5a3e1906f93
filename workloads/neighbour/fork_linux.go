package neighbour

import "syscall"

// forkExit clones the process and has the child exit immediately. The
// child runs no Go code after the raw clone returns: only the exit_group
// system call, so the runtime's state in the copied address space never
// matters (the same discipline the runtime uses between fork and exec).
//
//go:nosplit
//go:norace
func forkExit() (int, syscall.Errno) {
	pid, _, err := syscall.RawSyscall6(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0, 0, 0, 0)
	if err != 0 {
		return 0, err
	}
	if pid == 0 {
		syscall.RawSyscall(syscall.SYS_EXIT_GROUP, 0, 0, 0)
	}
	return int(pid), 0
}
