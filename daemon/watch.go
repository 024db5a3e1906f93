package daemon

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/daemon/eventlog"
)

// watcher wakes step controllers as soon as the kernel reports something:
// inotify on memory.events and memory.events.local (the kernel signals them
// as modified on every new event), and a PSI trigger on each step's
// memory.pressure. It also refreshes each step's memory.pressure avg10 for
// the "effect on other steps" rule.
type watcher struct {
	d    *Daemon
	ifd  int
	mu   sync.Mutex
	wds  map[int]*step
	psi  map[*step]*os.File
	quit chan struct{}
}

func newWatcher(d *Daemon) (*watcher, error) {
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if errors.Is(err, unix.ENOSYS) {
		// A kernel without CONFIG_INOTIFY_USER: memory.events changes are
		// then seen at the next tick (daemon.tick), PSI triggers still wake.
		d.log.Emit(eventlog.Event{Kind: "error", Error: "inotify: " + err.Error(),
			Detail: "kernel without CONFIG_INOTIFY_USER: memory.events is read every daemon.tick instead"})
		ifd = -1
	} else if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &watcher{d: d, ifd: ifd, wds: map[int]*step{}, psi: map[*step]*os.File{}, quit: make(chan struct{})}
	if ifd >= 0 {
		go w.readLoop()
	}
	go w.avgLoop()
	return w, nil
}

func (w *watcher) close() {
	close(w.quit)
	if w.ifd >= 0 {
		unix.Close(w.ifd) // ends readLoop's blocking read
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for s, f := range w.psi {
		f.Close()
		delete(w.psi, s)
	}
}

func (w *watcher) add(s *step) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range []string{"memory.events", "memory.events.local"} {
		if w.ifd < 0 {
			break
		}
		wd, err := unix.InotifyAddWatch(w.ifd, filepath.Join(s.cg.Path, f), unix.IN_MODIFY)
		if err != nil {
			return fmt.Errorf("inotify watch %s/%s: %w", s.cg.Path, f, err)
		}
		w.wds[wd] = s
	}
	e := s.prof.Escalation
	if e.PSIWindow > 0 {
		f, err := os.OpenFile(filepath.Join(s.cg.Path, "memory.pressure"), os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open %s/memory.pressure for a PSI trigger: %w", s.cg.Path, err)
		}
		trig := fmt.Sprintf("some %d %d", e.PSIStall.D().Microseconds(), e.PSIWindow.D().Microseconds())
		if _, err := f.Write([]byte(trig + "\x00")); err != nil {
			f.Close()
			return fmt.Errorf("set PSI trigger %q on %s/memory.pressure: %w", trig, s.cg.Path, err)
		}
		w.psi[s] = f
		go w.psiLoop(s, int(f.Fd()))
	}
	return nil
}

func (w *watcher) remove(s *step) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for wd, ws := range w.wds {
		if ws == s {
			_, _ = unix.InotifyRmWatch(w.ifd, uint32(wd))
			delete(w.wds, wd)
		}
	}
	if f, ok := w.psi[s]; ok {
		delete(w.psi, s)
		f.Close()
	}
}

func (w *watcher) readLoop() {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := unix.Read(w.ifd, buf)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		w.mu.Lock()
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			if s, ok := w.wds[int(ev.Wd)]; ok {
				s.kick("memory.events")
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
		w.mu.Unlock()
	}
}

// psiLoop waits for the trigger (POLLPRI) until the step goes away.
func (w *watcher) psiLoop(s *step, fd int) {
	for {
		select {
		case <-s.stop:
			return
		case <-w.quit:
			return
		default:
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}}
		n, err := unix.Poll(pfd, 200)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		if n > 0 {
			if pfd[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0 {
				return
			}
			if pfd[0].Revents&unix.POLLPRI != 0 {
				s.psiFired.Store(true)
				s.kick("psi trigger")
			}
		}
	}
}

// avgLoop refreshes memory.pressure avg10 of every step (the kernel updates
// averages every 2 s, so 500 ms is plenty).
func (w *watcher) avgLoop() {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-w.quit:
			return
		case <-t.C:
		}
		for _, s := range w.d.stepList() {
			if p, err := s.cg.Pressure("memory.pressure"); err == nil {
				s.psiAvg10.Store(math.Float64bits(p.Some.Avg10))
			}
		}
	}
}
