package initramfs

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"testing"
)

// member is one parsed newc record (a test-only reader, independent of the
// writer's code paths).
type member struct {
	name  string
	mode  uint32
	ino   uint32
	rdev  [2]uint32
	data  string
	mtime uint32
	uid   uint32
}

func parseNewc(t *testing.T, b []byte) []member {
	t.Helper()
	var out []member
	off := 0
	hex := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("bad header field at %d: %v", off, err)
		}
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic at offset %d", off)
		}
		m := member{ino: hex(0), mode: hex(1), uid: hex(2), mtime: hex(5), rdev: [2]uint32{hex(9), hex(10)}}
		size, nameLen := int(hex(6)), int(hex(11))
		nameStart := off + 110
		m.name = string(b[nameStart : nameStart+nameLen-1])
		dataStart := align(nameStart + nameLen)
		m.data = string(b[dataStart : dataStart+size])
		off = align(dataStart + size)
		if m.name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, m)
	}
}

func sample() *Archive {
	a := NewArchive()
	a.Add(File("/usr/local/bin/tool", 0o755, []byte("binary!")))
	a.Add(Symlink("/bin/sh", "/bin/busybox"))
	a.Add(CharDev("/dev/console", 0o600, 5, 1))
	a.Add(Reader("/etc/motd", 0o644, 5, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader([]byte("hello"))), nil
	}))
	return a
}

func TestArchiveLayout(t *testing.T) {
	var buf bytes.Buffer
	if _, err := sample().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	ms := parseNewc(t, buf.Bytes())
	var names []string
	byName := map[string]member{}
	for _, m := range ms {
		names = append(names, m.name)
		byName[m.name] = m
		if m.mtime != 0 || m.uid != 0 {
			t.Errorf("%s: mtime %d uid %d, want 0 0", m.name, m.mtime, m.uid)
		}
	}
	want := []string{"bin", "bin/sh", "dev", "dev/console", "etc", "etc/motd", "usr", "usr/local", "usr/local/bin", "usr/local/bin/tool"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Fatalf("entries %v, want parents first in sorted order %v", names, want)
	}
	if m := byName["usr/local/bin/tool"]; m.data != "binary!" || m.mode != modeFile|0o755 {
		t.Errorf("tool: data %q mode %o", m.data, m.mode)
	}
	if m := byName["bin/sh"]; m.data != "/bin/busybox" || m.mode != modeSymlink|0o777 {
		t.Errorf("symlink: target %q mode %o", m.data, m.mode)
	}
	if m := byName["dev/console"]; m.rdev != [2]uint32{5, 1} || m.mode != modeCharDev|0o600 {
		t.Errorf("console: rdev %v mode %o", m.rdev, m.mode)
	}
	if m := byName["usr"]; m.mode != modeDir|0o755 {
		t.Errorf("implicit parent mode %o", m.mode)
	}
	if byName["etc/motd"].data != "hello" {
		t.Errorf("reader entry data %q", byName["etc/motd"].data)
	}
}

func TestArchiveReproducible(t *testing.T) {
	var a, b bytes.Buffer
	sample().WriteTo(&a)
	// Same content added in another order.
	x := NewArchive()
	x.Add(Reader("/etc/motd", 0o644, 5, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader([]byte("hello"))), nil
	}))
	x.Add(CharDev("/dev/console", 0o600, 5, 1))
	x.Add(Symlink("/bin/sh", "/bin/busybox"))
	x.Add(File("/usr/local/bin/tool", 0o755, []byte("binary!")))
	x.WriteTo(&b)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("equal content in a different insertion order gave different archives")
	}
}

func TestArchiveRejectsBadInput(t *testing.T) {
	a := NewArchive()
	a.Add(File("/etc", 0o644, nil))
	if err := a.Add(File("/etc/passwd", 0o644, nil)); err == nil {
		t.Error("adding a file below a regular file should fail")
	}
	short := NewArchive()
	short.Add(Reader("/x", 0o644, 10, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader([]byte("abc"))), nil
	}))
	if _, err := short.WriteTo(io.Discard); err == nil {
		t.Error("a reader shorter than its declared size should fail")
	}
}
