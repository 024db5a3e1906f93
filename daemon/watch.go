package daemon

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/daemon/eventlog"
)

// watcher wakes step controllers as soon as the kernel reports something,
// from one goroutine blocked in epoll_wait: inotify on each step's
// cgroup.events (populated, frozen) and, while the step is RUNNING, its
// memory.events (the kernel signals it as modified on every new event),
// and a PSI trigger on each step's memory.pressure. Nothing here wakes up
// on a timer: a step with nothing pending costs no CPU.
//
// While some step's state uses other steps' memory.pressure avg10 (the
// others_psi_some_avg10 rule), a second goroutine refreshes every step's
// avg10 each 500 ms; it runs only then.
type watcher struct {
	d    *Daemon
	ifd  int // inotify, non-blocking; -1 on a kernel without inotify
	epfd int
	efd  int // eventfd: close() writes it to end the loop

	mu   sync.Mutex
	wds  map[int]watchRef // inotify watch descriptor -> step and file
	mev  map[*step]int    // the step's memory.events watch, while it has one
	cge  map[*step]int    // the step's cgroup.events watch
	psi  map[int32]*step  // PSI trigger fd -> step
	psiF map[*step]int32

	avgMu    sync.Mutex
	avgUsers map[*step]bool
	avgStop  chan struct{} // non-nil while the refresh loop runs

	loopDone chan struct{}
}

type watchRef struct {
	s    *step
	file string // "memory.events" or "cgroup.events"
}

func newWatcher(d *Daemon) (*watcher, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	w := &watcher{d: d, ifd: -1, epfd: epfd, efd: efd, wds: map[int]watchRef{}, mev: map[*step]int{}, cge: map[*step]int{},
		psi: map[int32]*step{}, psiF: map[*step]int32{}, avgUsers: map[*step]bool{}, loopDone: make(chan struct{})}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}); err != nil {
		w.closeFDs()
		return nil, fmt.Errorf("epoll add eventfd: %w", err)
	}
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	switch {
	case errors.Is(err, unix.ENOSYS):
		// A kernel without CONFIG_INOTIFY_USER: every step is then
		// evaluated each daemon.tick; PSI triggers still wake at once.
		d.log.Emit(eventlog.Event{Kind: "error", Error: "inotify: " + err.Error(),
			Detail: "kernel without CONFIG_INOTIFY_USER: memory.events and cgroup.events are read every daemon.tick instead"})
	case err != nil:
		w.closeFDs()
		return nil, fmt.Errorf("inotify: %w", err)
	default:
		w.ifd = ifd
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, ifd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(ifd)}); err != nil {
			w.closeFDs()
			return nil, fmt.Errorf("epoll add inotify: %w", err)
		}
	}
	go w.loop()
	return w, nil
}

// polling reports whether steps must be evaluated every tick because the
// kernel cannot tell the daemon about changes.
func (w *watcher) polling() bool { return w.ifd < 0 }

func (w *watcher) close() {
	var one [8]byte
	one[0] = 1 // any non-zero count makes the eventfd readable
	_, _ = unix.Write(w.efd, one[:])
	<-w.loopDone
	w.avgMu.Lock()
	if w.avgStop != nil {
		close(w.avgStop)
		w.avgStop = nil
	}
	w.avgMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	for fd := range w.psi {
		unix.Close(int(fd))
	}
	w.psi, w.psiF = map[int32]*step{}, map[*step]int32{}
	w.closeFDs()
}

func (w *watcher) closeFDs() {
	for _, fd := range []*int{&w.ifd, &w.efd, &w.epfd} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// add starts watching a new or adopted step: cgroup.events always,
// memory.events while RUNNING (setMemoryEvents), the PSI trigger if the
// profile sets one.
func (w *watcher) add(s *step) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ifd >= 0 {
		wd, err := w.addWatchLocked(s, "cgroup.events")
		if err != nil {
			return err
		}
		w.cge[s] = wd
		if wd, err = w.addWatchLocked(s, "memory.events"); err != nil {
			w.rmWatchLocked(w.cge[s])
			delete(w.cge, s)
			return err
		}
		w.mev[s] = wd
	}
	e := s.prof.Escalation
	if e.PSIWindow > 0 {
		path := filepath.Join(s.cg.Path, "memory.pressure")
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			w.removeLocked(s)
			return fmt.Errorf("open %s for a PSI trigger: %w", path, err)
		}
		trig := fmt.Sprintf("some %d %d", e.PSIStall.D().Microseconds(), e.PSIWindow.D().Microseconds())
		if _, err := unix.Write(fd, []byte(trig+"\x00")); err != nil {
			unix.Close(fd)
			w.removeLocked(s)
			return fmt.Errorf("set PSI trigger %q on %s: %w", trig, path, err)
		}
		if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLPRI, Fd: int32(fd)}); err != nil {
			unix.Close(fd)
			w.removeLocked(s)
			return fmt.Errorf("epoll add the PSI trigger of %s: %w", path, err)
		}
		w.psi[int32(fd)], w.psiF[s] = s, int32(fd)
	}
	return nil
}

func (w *watcher) addWatchLocked(s *step, file string) (int, error) {
	path := filepath.Join(s.cg.Path, file)
	wd, err := unix.InotifyAddWatch(w.ifd, path, unix.IN_MODIFY)
	if err != nil {
		return -1, fmt.Errorf("inotify watch %s: %w", path, err)
	}
	w.wds[wd] = watchRef{s, file}
	return wd, nil
}

func (w *watcher) rmWatchLocked(wd int) {
	delete(w.wds, wd)
	_, _ = unix.InotifyRmWatch(w.ifd, uint32(wd))
}

// setMemoryEvents watches memory.events of a step, or stops. A step that
// is not RUNNING is looked at by time (see step.schedule), and each look
// reads memory.events: a throttled step's notifications (up to a hundred
// a second) would only wake the daemon for nothing. watched reports whether the
// watch is in place afterwards, added whether this call put it there.
func (w *watcher) setMemoryEvents(s *step, on bool) (watched, added bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ifd < 0 {
		return false, false
	}
	wd, has := w.mev[s]
	switch {
	case on && has:
		return true, false
	case on:
		if _, ok := w.cge[s]; !ok {
			return false, false // removed, or its cgroup went away
		}
		wd, err := w.addWatchLocked(s, "memory.events")
		if err != nil {
			return false, false
		}
		w.mev[s] = wd
		return true, true
	case has:
		w.rmWatchLocked(wd)
		delete(w.mev, s)
	}
	return false, false
}

func (w *watcher) remove(s *step) {
	w.mu.Lock()
	w.removeLocked(s)
	w.mu.Unlock()
	w.setAvgUser(s, false)
}

func (w *watcher) removeLocked(s *step) {
	if wd, ok := w.mev[s]; ok {
		w.rmWatchLocked(wd)
		delete(w.mev, s)
	}
	if wd, ok := w.cge[s]; ok {
		w.rmWatchLocked(wd)
		delete(w.cge, s)
	}
	if fd, ok := w.psiF[s]; ok {
		_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
		unix.Close(int(fd))
		delete(w.psi, fd)
		delete(w.psiF, s)
	}
}

func (w *watcher) loop() {
	defer close(w.loopDone)
	evs := make([]unix.EpollEvent, 16)
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := unix.EpollWait(w.epfd, evs, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			w.d.log.Emit(eventlog.Event{Kind: "error", Error: "epoll_wait: " + err.Error(),
				Detail: "kernel notifications are lost; steps are evaluated only by their timers"})
			return
		}
		at := eventlog.Mono()
		// One wakeup per step for everything this batch reported.
		kick := map[*step]string{}
		w.mu.Lock()
		for _, ev := range evs[:n] {
			switch fd := ev.Fd; {
			case int(fd) == w.efd:
				w.mu.Unlock()
				return
			case int(fd) == w.ifd:
				w.drainInotifyLocked(buf, kick)
			default:
				s, ok := w.psi[fd]
				if !ok {
					continue
				}
				if ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
					// The cgroup is gone: stop listening, or epoll
					// would report the dead trigger forever.
					_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
					kick[s] = "psi trigger"
					continue
				}
				if ev.Events&unix.EPOLLPRI != 0 {
					s.psiFired.Store(true)
					kick[s] = "psi trigger"
				}
			}
		}
		w.mu.Unlock()
		for s, why := range kick {
			s.kickAt(why, at)
		}
	}
}

// drainInotifyLocked reads every queued inotify event and records which
// steps to wake. A PSI trigger or memory.events reason wins over
// cgroup.events for the log.
func (w *watcher) drainInotifyLocked(buf []byte, kick map[*step]string) {
	for {
		n, err := unix.Read(w.ifd, buf)
		if err != nil || n <= 0 {
			return // EAGAIN: drained
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				// Events were lost: look at every step.
				for _, r := range w.wds {
					if _, ok := kick[r.s]; !ok {
						kick[r.s] = "inotify overflow"
					}
				}
				continue
			}
			r, ok := w.wds[int(ev.Wd)]
			if !ok {
				continue // a watch removed meanwhile
			}
			if ev.Mask&unix.IN_IGNORED != 0 {
				// The file went away with its cgroup; the kernel dropped
				// the watch. The step's evaluation notices the removal.
				delete(w.wds, int(ev.Wd))
				if w.mev[r.s] == int(ev.Wd) {
					delete(w.mev, r.s)
				}
				if w.cge[r.s] == int(ev.Wd) {
					delete(w.cge, r.s)
				}
			}
			if cur, ok := kick[r.s]; !ok || cur == "cgroup.events" {
				kick[r.s] = r.file
			}
		}
	}
}

// setAvgUser records whether a step's state uses other steps'
// memory.pressure avg10, and runs the refresh loop while any does. The
// first user refreshes every step at once, so its first decision does not
// read values from before the loop stopped.
// It takes no other lock while holding avgMu: the refresh takes d.mu.
func (w *watcher) setAvgUser(s *step, on bool) {
	w.avgMu.Lock()
	if on == w.avgUsers[s] {
		w.avgMu.Unlock()
		return
	}
	if on {
		w.avgUsers[s] = true
	} else {
		delete(w.avgUsers, s)
	}
	started := false
	switch {
	case len(w.avgUsers) > 0 && w.avgStop == nil:
		w.avgStop = make(chan struct{})
		go w.avgLoop(w.avgStop)
		started = true
	case len(w.avgUsers) == 0 && w.avgStop != nil:
		close(w.avgStop)
		w.avgStop = nil
	}
	w.avgMu.Unlock()
	if started {
		w.refreshAvg()
	}
}

// avgLoop refreshes memory.pressure avg10 of every step (the kernel updates
// averages every 2 s, so 500 ms is plenty) until stop is closed.
func (w *watcher) avgLoop(stop chan struct{}) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		w.refreshAvg()
	}
}

func (w *watcher) refreshAvg() {
	for _, s := range w.d.stepList() {
		if p, err := s.cg.Pressure("memory.pressure"); err == nil {
			s.psiAvg10.Store(math.Float64bits(p.Some.Avg10))
		}
	}
}
