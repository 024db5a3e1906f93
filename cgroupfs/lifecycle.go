package cgroupfs

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// WaitEvents blocks until cond holds for cgroup.events or ctx ends. The
// kernel signals changes to cgroup.events as file modifications, so this
// sleeps on inotify; a 50 ms re-check guards against a missed wakeup.
func (c Cgroup) WaitEvents(ctx context.Context, cond func(Events) bool) error {
	name := c.file("cgroup.events")
	ifd, ierr := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if ierr == nil {
		defer unix.Close(ifd)
		if _, err := unix.InotifyAddWatch(ifd, name, unix.IN_MODIFY); err != nil {
			unix.Close(ifd)
			ifd, ierr = -1, err
		}
	}
	buf := make([]byte, 4096)
	for {
		ev, err := c.Events()
		if err != nil {
			return err
		}
		if cond(ev) {
			return nil
		}
		wait := 50 * time.Millisecond
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			wait = max(time.Until(dl), time.Millisecond)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("cgroupfs: waiting on %s (now populated=%v frozen=%v): %w", name, ev.Populated, ev.Frozen, err)
		}
		if ierr != nil || ifd < 0 {
			time.Sleep(wait)
			continue
		}
		pfd := []unix.PollFd{{Fd: int32(ifd), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, int(wait/time.Millisecond)); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("cgroupfs: poll inotify on %s: %w", name, err)
		}
		for {
			if _, err := unix.Read(ifd, buf); err != nil {
				break
			}
		}
	}
}

// Freeze sets cgroup.freeze and waits until the kernel reports the whole
// subtree frozen.
func (c Cgroup) Freeze(ctx context.Context) error {
	if err := c.Write("cgroup.freeze", "1"); err != nil {
		return err
	}
	return c.WaitEvents(ctx, func(e Events) bool { return e.Frozen })
}

// Unfreeze clears cgroup.freeze and waits until the subtree is thawed.
func (c Cgroup) Unfreeze(ctx context.Context) error {
	if err := c.Write("cgroup.freeze", "0"); err != nil {
		return err
	}
	return c.WaitEvents(ctx, func(e Events) bool { return !e.Frozen })
}

// Kill sends SIGKILL to every process in the subtree via cgroup.kill. It
// does not wait; see KillWait.
func (c Cgroup) Kill() error { return c.Write("cgroup.kill", "1") }

// KillWait kills the subtree and waits until it has no processes left.
func (c Cgroup) KillWait(ctx context.Context) error {
	if err := c.Kill(); err != nil {
		return err
	}
	return c.WaitEmpty(ctx)
}

// WaitEmpty waits until no process is left in the subtree.
func (c Cgroup) WaitEmpty(ctx context.Context) error {
	return c.WaitEvents(ctx, func(e Events) bool { return !e.Populated })
}

// RemoveAll removes the cgroup and its descendants, deepest first. With
// kill it first kills every process in the subtree and waits for them to
// exit; without it a populated subtree yields ErrNotEmpty and nothing is
// killed. A missing cgroup is not an error.
func (c Cgroup) RemoveAll(ctx context.Context, kill bool) error {
	if !c.Exists() {
		return nil
	}
	if kill {
		if err := c.KillWait(ctx); err != nil {
			return err
		}
	}
	kids, err := c.Children()
	if err != nil {
		if !c.Exists() {
			return nil // removed by someone else meanwhile
		}
		return err
	}
	for _, k := range kids {
		if err := c.Child(k).RemoveAll(ctx, false); err != nil {
			return err
		}
	}
	// A process that just exited may still be counted for a moment after
	// populated drops; retry EBUSY briefly.
	for {
		err := c.Remove()
		if err == nil || !errors.Is(err, ErrNotEmpty) || !kill {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Start starts cmd with the child created directly inside the cgroup
// (clone3 with CLONE_INTO_CGROUP), so it is charged to the cgroup before it
// executes its first instruction. Any existing cmd.SysProcAttr is kept.
func (c Cgroup) Start(cmd *exec.Cmd) error {
	dir, err := c.OpenDir()
	if err != nil {
		return err
	}
	defer dir.Close()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(dir.Fd())
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cgroupfs: start %s inside %s: %w", filepath.Base(cmd.Path), c.Path, err)
	}
	return nil
}
