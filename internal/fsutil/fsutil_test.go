package fsutil

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileReplacesWholeAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "f.json")
	if err := WriteJSON(p, map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("second\n")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "second\n" {
		t.Fatalf("read back %q, %v", b, err)
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if len(ents) != 1 {
		t.Fatalf("temporary files left behind: %v", ents)
	}
}

func TestWriteFileFailureKeepsOldContent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFile(p, []byte("old")); err != nil {
		t.Fatal(err)
	}
	// A directory in the way of the rename: the write must fail, keep the
	// old target and clean up its temporary file.
	if err := WriteFile(filepath.Join(p, "x"), []byte("new")); err == nil {
		t.Fatal("write under a regular file succeeded")
	}
	if err := WriteJSON(p, func() {}); err == nil {
		t.Fatal("unencodable value written")
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Fatalf("old content lost: %q", b)
	}
}

func TestCopyFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.WriteFile(src, []byte("payload"), 0o600)
	dst := filepath.Join(dir, "a", "b", "dst")
	if err := CopyFile(src, dst); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(dst)
	if string(b) != "payload" {
		t.Fatalf("copied %q", b)
	}
	if err := CopyFile(filepath.Join(dir, "missing"), dst); !os.IsNotExist(err) {
		t.Fatalf("missing source: %v", err)
	}
}
