// Package cgroupfs holds small primitives over a cgroup2 mount: creating and
// removing cgroup directories, reading and writing knobs, moving processes,
// freezing and killing, parsing the kernel's file formats, and the naming of
// the agent tree (agentcgroup/sess_<SID>/step_<TID>).
//
// Every error names the file it concerns, so a failure inside a guest can be
// diagnosed from the message alone.
package cgroupfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultMount is where cgroup2 is mounted on systemd hosts and in our guests.
const DefaultMount = "/sys/fs/cgroup"

// ErrNotEmpty is returned by Remove when the cgroup still has processes or
// child cgroups; the kernel refuses rmdir with EBUSY in that case.
var ErrNotEmpty = errors.New("cgroup is not empty")

// Cgroup is one cgroup2 directory, named by its absolute path.
type Cgroup struct {
	Path string
}

// Open returns the cgroup at path after checking that it is a cgroup2
// directory (it holds cgroup.procs).
func Open(path string) (Cgroup, error) {
	if _, err := os.Stat(filepath.Join(path, "cgroup.procs")); err != nil {
		if os.IsNotExist(err) {
			return Cgroup{}, fmt.Errorf("cgroupfs: %s is not a cgroup2 directory (no cgroup.procs); is cgroup2 mounted there?", path)
		}
		return Cgroup{}, fmt.Errorf("cgroupfs: open %s: %w", path, err)
	}
	return Cgroup{Path: path}, nil
}

// Mkdir creates the cgroup at path (its parent must exist). An existing
// directory is not an error: creation is idempotent so a restarted daemon can
// adopt what it made before.
func Mkdir(path string) (Cgroup, error) {
	if err := os.Mkdir(path, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return Cgroup{}, fmt.Errorf("cgroupfs: create cgroup %s: %w", path, err)
	}
	return Cgroup{Path: path}, nil
}

// Child returns the (possibly not yet created) child cgroup called name.
func (c Cgroup) Child(name string) Cgroup { return Cgroup{Path: filepath.Join(c.Path, name)} }

// Exists reports whether the directory is present.
func (c Cgroup) Exists() bool {
	fi, err := os.Stat(c.Path)
	return err == nil && fi.IsDir()
}

// Remove deletes the cgroup directory. It fails with ErrNotEmpty (wrapped)
// when processes or child cgroups remain; it never kills anything. A missing
// directory is not an error.
func (c Cgroup) Remove() error {
	err := unix.Rmdir(c.Path)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.ENOTEMPTY):
		return fmt.Errorf("cgroupfs: remove %s: %w (kill or move its processes and remove its children first)", c.Path, ErrNotEmpty)
	default:
		return fmt.Errorf("cgroupfs: remove %s: %w", c.Path, err)
	}
}

// ID returns the cgroup id: the directory's inode number, which equals
// cgrp->kn->id in the kernel and keys every BPF map we share.
func (c Cgroup) ID() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(c.Path, &st); err != nil {
		return 0, fmt.Errorf("cgroupfs: stat %s for its cgroup id: %w", c.Path, err)
	}
	return st.Ino, nil
}

func (c Cgroup) file(knob string) string { return filepath.Join(c.Path, knob) }

// Read returns a knob's content with the trailing newline removed.
func (c Cgroup) Read(knob string) (string, error) {
	b, err := os.ReadFile(c.file(knob))
	if err != nil {
		return "", fmt.Errorf("cgroupfs: read %s: %w", c.file(knob), err)
	}
	return strings.TrimRight(string(b), "\n"), nil
}

// Write writes value to a knob in a single write(2), as cgroupfs requires.
func (c Cgroup) Write(knob, value string) error {
	f, err := os.OpenFile(c.file(knob), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("cgroupfs: open %s for writing: %w", c.file(knob), err)
	}
	_, werr := f.Write([]byte(value))
	cerr := f.Close()
	if werr != nil {
		return fmt.Errorf("cgroupfs: write %q to %s: %w", value, c.file(knob), werr)
	}
	if cerr != nil {
		return fmt.Errorf("cgroupfs: write %q to %s: %w", value, c.file(knob), cerr)
	}
	return nil
}

// Max is what ReadLimit returns for the literal "max".
const Max = ^uint64(0)

// ReadUint reads a single-number knob (memory.current, pids.current, ...).
func (c Cgroup) ReadUint(knob string) (uint64, error) {
	s, err := c.Read(knob)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroupfs: %s: want an unsigned integer, got %q", c.file(knob), s)
	}
	return v, nil
}

// ReadLimit reads a limit knob (memory.high, memory.max, pids.max) where
// "max" means unlimited and is returned as Max.
func (c Cgroup) ReadLimit(knob string) (uint64, error) {
	s, err := c.Read(knob)
	if err != nil {
		return 0, err
	}
	if strings.TrimSpace(s) == "max" {
		return Max, nil
	}
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroupfs: %s: want an unsigned integer or \"max\", got %q", c.file(knob), s)
	}
	return v, nil
}

// WriteLimit writes a byte/count limit; Max is written as "max".
func (c Cgroup) WriteLimit(knob string, v uint64) error {
	if v == Max {
		return c.Write(knob, "max")
	}
	return c.Write(knob, strconv.FormatUint(v, 10))
}

// AddProc moves pid (every thread of the process) into the cgroup.
func (c Cgroup) AddProc(pid int) error {
	if err := c.Write("cgroup.procs", strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("cgroupfs: move pid %d: %w", pid, err)
	}
	return nil
}

// Procs lists the process ids directly in the cgroup.
func (c Cgroup) Procs() ([]int, error) {
	s, err := c.Read("cgroup.procs")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(s) {
		p, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("cgroupfs: %s: bad pid %q", c.file("cgroup.procs"), f)
		}
		pids = append(pids, p)
	}
	return pids, nil
}

// Children lists the names of child cgroups.
func (c Cgroup) Children() ([]string, error) {
	ents, err := os.ReadDir(c.Path)
	if err != nil {
		return nil, fmt.Errorf("cgroupfs: list children of %s: %w", c.Path, err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// OpenDir opens the cgroup directory for CLONE_INTO_CGROUP; the caller closes it.
func (c Cgroup) OpenDir() (*os.File, error) {
	fd, err := unix.Open(c.Path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("cgroupfs: open cgroup directory %s: %w", c.Path, err)
	}
	return os.NewFile(uintptr(fd), c.Path), nil
}
