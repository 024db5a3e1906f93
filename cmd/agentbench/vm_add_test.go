package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestAddHostPath(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "tree", "bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "tree", "bin", "tool"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "tree", "conf"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "one"), []byte("y"), 0o644)
	files := map[string]string{}
	for _, s := range []string{dir + "/tree:/opt/t/", dir + "/one:/etc/one"} {
		if err := addHostPath(files, s); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{
		"/opt/t/bin/tool": filepath.Join(dir, "tree", "bin", "tool"),
		"/opt/t/conf":     filepath.Join(dir, "tree", "conf"),
		"/etc/one":        filepath.Join(dir, "one"),
	}
	if len(files) != len(want) {
		t.Fatalf("got %v, want %v", files, want)
	}
	for g, h := range want {
		if files[g] != h {
			t.Errorf("%s -> %q, want %q", g, files[g], h)
		}
	}
	os.Symlink("one", filepath.Join(dir, "tree", "link"))
	for _, bad := range []string{dir + "/one", dir + "/one:relative", dir + "/one:/", "/nonexistent:/x", dir + "/tree:/opt/t"} {
		if err := addHostPath(map[string]string{}, bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}
