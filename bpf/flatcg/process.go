package flatcg

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// SetSchedExtProcess moves every thread of process pid to SCHED_EXT.
// Scheduling policy is per thread and inherited by threads and children
// created afterwards, so a launcher that calls this on itself before it
// starts any work has its whole process tree scheduled by a partial-mode
// scheduler, the way a container runtime sets a policy on a container's
// init before exec.
func SetSchedExtProcess(pid int) error {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("flatcg: list threads of pid %d: %w", pid, err)
	}
	var errs []error
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// A thread that exited meanwhile needs nothing.
		if err := SetSchedExt(tid); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
