// Package initramfs builds the guest's initial RAM filesystem: a
// reproducible newc cpio archive (sorted entries, fixed owners and mtimes)
// from busybox, our static binaries and kernel modules.
package initramfs

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
)

// Mode bits for entries (the S_IF* values the kernel's unpacker expects).
const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

// Entry is one archive member. Exactly one of Data, Open or Target applies.
type Entry struct {
	Path   string // absolute guest path, e.g. /bin/sh
	Mode   uint32 // permission bits; the type comes from the constructor
	Data   []byte
	Open   func() (io.ReadCloser, error)
	Size   int64 // with Open
	Target string
	Rdev   [2]uint32 // major, minor of a device node
	kind   uint32
}

// Dir, File, Reader and Symlink build entries of each type.
func Dir(p string, perm uint32) Entry { return Entry{Path: p, Mode: perm, kind: modeDir} }
func File(p string, perm uint32, data []byte) Entry {
	return Entry{Path: p, Mode: perm, Data: data, Size: int64(len(data)), kind: modeFile}
}
func Reader(p string, perm uint32, size int64, open func() (io.ReadCloser, error)) Entry {
	return Entry{Path: p, Mode: perm, Open: open, Size: size, kind: modeFile}
}
func CharDev(p string, perm, major, minor uint32) Entry {
	return Entry{Path: p, Mode: perm, Rdev: [2]uint32{major, minor}, kind: modeCharDev}
}
func Symlink(p, target string) Entry {
	return Entry{Path: p, Mode: 0o777, Target: target, Size: int64(len(target)), kind: modeSymlink}
}

// Archive collects entries and writes them in a canonical order, adding any
// missing parent directories, so equal inputs give byte-identical output.
type Archive struct {
	entries map[string]Entry
}

func NewArchive() *Archive { return &Archive{entries: map[string]Entry{}} }

// Add records e, replacing an earlier entry at the same path.
func (a *Archive) Add(e Entry) error {
	p := path.Clean("/" + e.Path)
	if p == "/" {
		return fmt.Errorf("initramfs: cannot add the root directory itself")
	}
	e.Path = p
	a.entries[p] = e
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if old, ok := a.entries[d]; ok {
			if old.kind != modeDir {
				return fmt.Errorf("initramfs: %s is a parent of %s but not a directory", d, p)
			}
			continue
		}
		a.entries[d] = Dir(d, 0o755)
	}
	return nil
}

// Has reports whether path is in the archive.
func (a *Archive) Has(p string) bool { _, ok := a.entries[path.Clean(p)]; return ok }

// WriteTo writes the archive in newc format, parents before children.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	paths := make([]string, 0, len(a.entries))
	for p := range a.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths) // "/a" < "/a/b": parents always come first
	cw := &countWriter{w: bufio.NewWriterSize(w, 1<<20)}
	for i, p := range paths {
		if err := writeEntry(cw, a.entries[p], uint32(i+1)); err != nil {
			return cw.n, fmt.Errorf("initramfs: %s: %w", p, err)
		}
	}
	if err := writeHeader(cw, "TRAILER!!!", 0, 0, 0, 1, [2]uint32{}); err != nil {
		return cw.n, err
	}
	return cw.n, cw.w.(*bufio.Writer).Flush()
}

func writeEntry(w *countWriter, e Entry, ino uint32) error {
	name := strings.TrimPrefix(e.Path, "/")
	nlink := uint32(1)
	if e.kind == modeDir {
		nlink = 2
	}
	if err := writeHeader(w, name, e.kind|e.Mode&0o7777, ino, e.Size, nlink, e.Rdev); err != nil {
		return err
	}
	var n int64
	var err error
	switch {
	case e.kind == modeSymlink:
		var k int
		k, err = io.WriteString(w, e.Target)
		n = int64(k)
	case e.Open != nil:
		var r io.ReadCloser
		if r, err = e.Open(); err != nil {
			return err
		}
		n, err = io.Copy(w, r)
		r.Close()
	default:
		var k int
		k, err = w.Write(e.Data)
		n = int64(k)
	}
	if err != nil {
		return err
	}
	if n != e.Size {
		return fmt.Errorf("wrote %d bytes, expected %d (file changed while archiving?)", n, e.Size)
	}
	return pad(w)
}

// writeHeader writes a newc header with owner root and mtime 0.
func writeHeader(w *countWriter, name string, mode, ino uint32, size int64, nlink uint32, rdev [2]uint32) error {
	if size > 0xffffffff {
		return fmt.Errorf("file too large for newc (%d bytes)", size)
	}
	_, err := fmt.Fprintf(w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\x00",
		ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(name)+1, 0, name)
	if err != nil {
		return err
	}
	return pad(w)
}

func pad(w *countWriter) error {
	if r := w.n % 4; r != 0 {
		_, err := w.Write(make([]byte, 4-r))
		return err
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
