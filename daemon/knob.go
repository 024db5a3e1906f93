package daemon

import (
	"bytes"
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
)

// knob is a cgroup file a step's controller reads at every evaluation,
// kept open and re-read with pread at offset 0 (the kernel regenerates the
// text on each read from the start). That is one system call per look
// instead of open, fstat, read, close and the Go runtime's epoll
// registration of a pollable file, several times dearer under emulation.
// If the open failed, reads fall back to the path.
type knob struct {
	path string
	fd   int
	buf  []byte
}

func openKnob(path string) *knob {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		fd = -1
	}
	return &knob{path: path, fd: fd, buf: make([]byte, 512)}
}

func (k *knob) read() ([]byte, error) {
	if k == nil {
		return nil, errors.New("knob not open")
	}
	if k.fd < 0 {
		return os.ReadFile(k.path)
	}
	for {
		n, err := unix.Pread(k.fd, k.buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "pread", Path: k.path, Err: err}
		}
		if n < len(k.buf) {
			return k.buf[:n], nil
		}
		k.buf = make([]byte, 2*len(k.buf)) // may not have been all of it
	}
}

func (k *knob) flatKeyed() (map[string]uint64, error) {
	b, err := k.read()
	if err != nil {
		return nil, err
	}
	return cgroupfs.ParseFlatKeyed(k.path, bytes.NewReader(b))
}

func (k *knob) close() {
	if k != nil && k.fd >= 0 {
		unix.Close(k.fd)
		k.fd = -1
	}
}
