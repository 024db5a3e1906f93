package flatcg

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SchedExt is the SCHED_EXT scheduling policy number.
const SchedExt = 7

// SetSchedExt moves a task to the SCHED_EXT policy, which is what a
// partial-mode scheduler picks up. pid 0 means the calling thread. The
// task's nice value is kept.
func SetSchedExt(pid int) error {
	attr := &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: SchedExt}
	nice, err := unix.Getpriority(unix.PRIO_PROCESS, pid)
	if err == nil {
		// getpriority returns 20-nice on Linux
		attr.Nice = int32(20 - nice)
	}
	if err := unix.SchedSetAttr(pid, attr, 0); err != nil {
		return fmt.Errorf("flatcg: sched_setattr(pid %d, SCHED_EXT): %w (needs a kernel with sched_ext and CAP_SYS_NICE)", pid, err)
	}
	return nil
}

// TaskPolicy returns the scheduling policy of pid as listed in
// /proc/PID/sched ("policy" line): 0 normal, 7 ext, ...
func TaskPolicy(pid int) (int, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "sched"))
	if err != nil {
		return 0, fmt.Errorf("flatcg: read sched info of pid %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "policy" {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("flatcg: /proc/%d/sched has no policy line", pid)
}

// CgroupID returns the id the scheduler keys cgroups by: the cgroup2
// directory's inode number (kn->id in the kernel).
func CgroupID(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("flatcg: cgroup %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return 0, fmt.Errorf("flatcg: %s is not a cgroup directory", dir)
	}
	return st.Ino, nil
}

// MonotonicNow is CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns and
// of StepPressure.LastUpdateNs.
func MonotonicNow() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err) // CLOCK_MONOTONIC cannot fail on Linux
	}
	return uint64(ts.Sec)*1e9 + uint64(ts.Nsec)
}
