package vm

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// VCPUTime is how the host treated the guest's vCPU threads while the job
// ran: the time they ran on a host CPU and the time they were runnable but
// waited for one (schedstat's run_delay). The guest cannot see the wait:
// its clock runs on while a vCPU waits, so whatever the guest was doing
// (a request, a reclaim pass, a spinner's slice) appears to take longer.
// A host shared with other work shows it here first.
type VCPUTime struct {
	Run     time.Duration `json:"run"`
	Wait    time.Duration `json:"wait"`
	Threads int           `json:"threads"` // vCPU threads found
}

// WaitShare is the fraction of the vCPUs' runnable time spent waiting for
// a host CPU (0 when nothing was measured).
func (v VCPUTime) WaitShare() float64 {
	if v.Run+v.Wait <= 0 {
		return 0
	}
	return float64(v.Wait) / float64(v.Run+v.Wait)
}

// schedstat is one thread's /proc/<pid>/task/<tid>/schedstat.
type schedstat struct{ run, wait time.Duration }

// parseSchedstat reads "<ns on cpu> <ns waiting on a runqueue> <slices>".
func parseSchedstat(s string) (schedstat, error) {
	f := strings.Fields(s)
	if len(f) < 2 {
		return schedstat{}, fmt.Errorf("schedstat %q: want at least 2 fields", s)
	}
	run, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return schedstat{}, fmt.Errorf("schedstat run time: %w", err)
	}
	wait, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return schedstat{}, fmt.Errorf("schedstat run delay: %w", err)
	}
	return schedstat{time.Duration(run), time.Duration(wait)}, nil
}

// isVCPUThread matches qemu's vCPU thread names with debug-threads=on:
// "CPU 0/TCG", "CPU 1/KVM".
func isVCPUThread(comm string) bool {
	comm = strings.TrimSpace(comm)
	return strings.HasPrefix(comm, "CPU ") && (strings.HasSuffix(comm, "/TCG") || strings.HasSuffix(comm, "/KVM"))
}

// findVCPUs lists the vCPU threads of process pid under procRoot
// ("/proc"). qemu creates them before the guest boots and keeps them until
// it exits, so one look at the job's start finds them all.
func findVCPUs(procRoot string, pid int) []int {
	dir := filepath.Join(procRoot, strconv.Itoa(pid), "task")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var tids []int
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(dir, e.Name(), "comm"))
		if err == nil && isVCPUThread(string(comm)) {
			tids = append(tids, tid)
		}
	}
	return tids
}

// readSchedstats reads the listed threads' schedstat, by thread id; a
// thread that is gone (qemu exiting) is left out.
func readSchedstats(procRoot string, pid int, tids []int) map[int]schedstat {
	out := make(map[int]schedstat, len(tids))
	for _, tid := range tids {
		b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "task", strconv.Itoa(tid), "schedstat"))
		if err != nil {
			continue
		}
		if st, err := parseSchedstat(string(b)); err == nil {
			out[tid] = st
		}
	}
	return out
}

// vcpuSampler follows a qemu process's vCPU threads from the job's start
// (mark) to its end (end). The threads are gone once qemu exits, so it
// samples periodically in between and keeps the last complete reading;
// readings before the mark are not taken and after the end not kept (the
// guest then writes its results and powers off, which is not the job).
type vcpuSampler struct {
	procRoot string
	pid      int

	mu         sync.Mutex
	tids       []int // found at the mark
	base, last map[int]schedstat
	ended      bool
}

// mark finds the vCPU threads and measures from their reading now.
func (s *vcpuSampler) mark() {
	tids := findVCPUs(s.procRoot, s.pid)
	cur := readSchedstats(s.procRoot, s.pid, tids)
	s.mu.Lock()
	s.tids, s.base, s.last = tids, cur, cur
	s.mu.Unlock()
}

func (s *vcpuSampler) sample() {
	s.mu.Lock()
	tids, active := s.tids, s.base != nil && !s.ended
	s.mu.Unlock()
	if !active {
		return
	}
	cur := readSchedstats(s.procRoot, s.pid, tids)
	s.mu.Lock()
	if !s.ended && len(cur) == len(tids) {
		s.last = cur
	}
	s.mu.Unlock()
}

// end takes the job's last reading.
func (s *vcpuSampler) end() {
	s.sample()
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
}

// run samples every period until done is closed.
func (s *vcpuSampler) run(period time.Duration, done <-chan struct{}) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			s.sample()
		}
	}
}

// total is the time from the mark to the last reading (zero without a
// mark: the job never started).
func (s *vcpuSampler) total() VCPUTime {
	s.mu.Lock()
	defer s.mu.Unlock()
	var v VCPUTime
	if s.base == nil {
		return v
	}
	for tid, l := range s.last {
		b, ok := s.base[tid]
		if !ok {
			continue
		}
		v.Run += max(l.run-b.run, 0)
		v.Wait += max(l.wait-b.wait, 0)
		v.Threads++
	}
	return v
}
