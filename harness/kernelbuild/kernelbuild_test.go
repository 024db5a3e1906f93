package kernelbuild

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

func TestDeriveKeyCoversEveryInput(t *testing.T) {
	p1 := patchID{"0001-a.patch", strings.Repeat("1", 64)}
	p2 := patchID{"0002-b.patch", strings.Repeat("2", 64)}
	tc := []string{"gcc 12.2.0", "GNU ld 2.40", "v1.24", "GNU Make 4.3"}
	base := deriveKey("src", []patchID{p1, p2}, "frag", tc)
	if again := deriveKey("src", []patchID{p1, p2}, "frag", tc); again != base {
		t.Fatalf("key is not deterministic: %s vs %s", base, again)
	}
	if len(base) != 64 {
		t.Fatalf("key %q is not a sha256 hex digest", base)
	}
	variants := map[string]string{
		"source":          deriveKey("src2", []patchID{p1, p2}, "frag", tc),
		"patch order":     deriveKey("src", []patchID{p2, p1}, "frag", tc),
		"patch dropped":   deriveKey("src", []patchID{p1}, "frag", tc),
		"patch content":   deriveKey("src", []patchID{p1, {p2.Name, strings.Repeat("3", 64)}}, "frag", tc),
		"patch renamed":   deriveKey("src", []patchID{p1, {"0003-b.patch", p2.SHA256}}, "frag", tc),
		"fragment":        deriveKey("src", []patchID{p1, p2}, "frag2", tc),
		"compiler":        deriveKey("src", []patchID{p1, p2}, "frag", []string{"gcc 13", tc[1], tc[2], tc[3]}),
		"pahole":          deriveKey("src", []patchID{p1, p2}, "frag", []string{tc[0], tc[1], "v1.25", tc[3]}),
		"no patches":      deriveKey("src", nil, "frag", tc),
		"empty toolchain": deriveKey("src", []patchID{p1, p2}, "frag", nil),
	}
	seen := map[string]string{base: "base"}
	for what, k := range variants {
		if prev, dup := seen[k]; dup {
			t.Errorf("changing %s gives the same key as %s", what, prev)
		}
		seen[k] = what
	}
}

func TestHashPatchesUsesContent(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "0001-x.patch")
	write(t, a, "one\n")
	ids1, err := hashPatches([]string{a})
	if err != nil {
		t.Fatal(err)
	}
	write(t, a, "two\n")
	ids2, err := hashPatches([]string{a})
	if err != nil {
		t.Fatal(err)
	}
	if ids1[0].Name != "0001-x.patch" || ids1[0] == ids2[0] {
		t.Fatalf("editing a patch must change its identity: %+v vs %+v", ids1[0], ids2[0])
	}
	if _, err := hashPatches([]string{filepath.Join(dir, "missing.patch")}); err == nil || !strings.Contains(err.Error(), "missing.patch") {
		t.Fatalf("missing patch: want an error naming it, got %v", err)
	}
}

func TestPatchSeriesOrderAndFilter(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"0002-b.patch", "0000-cover-letter.txt", "0001-a.patch", "README.md"} {
		write(t, filepath.Join(dir, n), "x")
	}
	got, err := PatchSeries(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || filepath.Base(got[0]) != "0001-a.patch" || filepath.Base(got[1]) != "0002-b.patch" {
		t.Fatalf("series = %v, want 0001-a.patch then 0002-b.patch", got)
	}
	if _, err := PatchSeries(filepath.Join(dir, "nope")); err == nil {
		t.Fatal("a missing patch directory must be an error")
	}
}

func fakeImages(t *testing.T) (bz, vml string) {
	dir := t.TempDir()
	bz, vml = filepath.Join(dir, "bzImage"), filepath.Join(dir, "vmlinux")
	write(t, bz, "kernel image")
	write(t, vml, "vmlinux with btf")
	return
}

func TestMarkerWrittenLastAndValidated(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "out", "k1")
	if _, err := readEntry(dir, "k1"); !isMissing(err) {
		t.Fatalf("no entry yet: want a not-exist error, got %v", err)
	}
	bz, vml := fakeImages(t)
	failStrip := func(src, dst string) error { return os.ErrPermission }
	if err := writeEntry(dir+".tmp", dir, marker{Key: "k1"}, bz, vml, failStrip); err == nil {
		t.Fatal("a failing step must fail writeEntry")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("a failed write must leave no entry under the final name (stat: %v)", err)
	}
	if _, err := readEntry(dir+".tmp", "k1"); !isMissing(err) {
		t.Fatalf("the half-written entry must have no marker, got %v", err)
	}

	if err := writeEntry(dir+".tmp", dir, marker{Key: "k1"}, bz, vml, fsutil.CopyFile); err != nil {
		t.Fatal(err)
	}
	out, err := readEntry(dir, "k1")
	if err != nil {
		t.Fatal(err)
	}
	if out.Key != "k1" || out.BzImage != filepath.Join(dir, "bzImage") || out.Vmlinux != filepath.Join(dir, "vmlinux") {
		t.Fatalf("unexpected output %+v", out)
	}
	var m marker
	b, _ := os.ReadFile(filepath.Join(dir, markerName))
	if err := json.Unmarshal(b, &m); err != nil || m.BzImageSHA256 == "" || m.VmlinuxSize != int64(len("vmlinux with btf")) {
		t.Fatalf("marker %s lacks the image hash or size (%v)", b, err)
	}
	if _, err := readEntry(dir, "k2"); err == nil || isMissing(err) {
		t.Fatalf("another key must be rejected as unusable, got %v", err)
	}
	write(t, filepath.Join(dir, "bzImage"), "tampered")
	if _, err := readEntry(dir, "k1"); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("a changed bzImage must invalidate the entry, got %v", err)
	}
	write(t, filepath.Join(dir, "bzImage"), "kernel image")
	os.Remove(filepath.Join(dir, "vmlinux"))
	if _, err := readEntry(dir, "k1"); err == nil {
		t.Fatal("a missing vmlinux must invalidate the entry")
	}
	write(t, filepath.Join(dir, markerName), "{not json")
	if _, err := readEntry(dir, "k1"); err == nil || !strings.Contains(err.Error(), "bad marker") {
		t.Fatalf("a corrupt marker must be reported, got %v", err)
	}
}

func TestConfigMismatches(t *testing.T) {
	frag := "# comment\nCONFIG_A=y\nCONFIG_B=n\nCONFIG_C=\"x\"\nCONFIG_D=y\nCONFIG_E=n\n"
	cfg := "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x\"\nCONFIG_E=y\n"
	got := configMismatches(frag, cfg)
	want := []string{"CONFIG_D wanted y, got unset", "CONFIG_E wanted n, got y"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("mismatches = %q, want %q", got, want)
	}
}

func TestCommonPrefix(t *testing.T) {
	a, b, c := patchID{"a", "1"}, patchID{"b", "2"}, patchID{"c", "3"}
	for _, tc := range []struct {
		applied, want []patchID
		n             int
	}{
		{nil, []patchID{a}, 0},
		{[]patchID{a, b}, []patchID{a, b}, 2},
		{[]patchID{a, b}, []patchID{a, c}, 1},
		{[]patchID{a, b}, []patchID{b, a}, 0},
		{[]patchID{a, b, c}, []patchID{a}, 1},
		{[]patchID{a}, []patchID{a, b, c}, 1},
	} {
		if got := commonPrefix(tc.applied, tc.want); got != tc.n {
			t.Errorf("commonPrefix(%v, %v) = %d, want %d", tc.applied, tc.want, got, tc.n)
		}
	}
}

// TestSourceAndPatchSync runs the tree steps on a miniature source package:
// unpack, apply a series, edit the second patch (only it is reverted and
// reapplied), drop it, and reject a patch that does not apply.
func TestSourceAndPatchSync(t *testing.T) {
	for _, tool := range []string{"dpkg-deb", "patch", "tar", "xz"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is a kernel build dependency and must be installed for this test: %s", tool, aptInstall)
		}
	}
	ctx := context.Background()
	work := t.TempDir()
	deb := fakeSourceDeb(t, work)
	b := &builder{in: Inputs{SourceDeb: deb}, root: filepath.Join(work, "root"), progress: &strings.Builder{}}
	if err := os.MkdirAll(b.root, 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := b.ensureSource(ctx, "sha-1")
	if err != nil {
		t.Fatal(err)
	}
	if st.SrcDir != "linux-source-9.9" {
		t.Fatalf("SrcDir = %q", st.SrcDir)
	}
	file := filepath.Join(b.root, "src", st.SrcDir, "mm", "memcontrol.c")
	write(t, filepath.Join(b.root, "obj", "stale.o"), "x")

	p1 := filepath.Join(work, "0001.patch")
	p2 := filepath.Join(work, "0002.patch")
	write(t, p1, diff("mm/memcontrol.c", "line1\nline2\nline3\n", "line1\nline2 patched\nline3\n"))
	write(t, p2, diff("mm/memcontrol.c", "line1\nline2 patched\nline3\n", "line1\nline2 patched\nline3 v1\n"))
	ids, _ := hashPatches([]string{p1, p2})
	if st, err = b.syncPatches(ctx, st, ids, []string{p1, p2}); err != nil {
		t.Fatal(err)
	}
	expectFile(t, file, "line1\nline2 patched\nline3 v1\n")

	write(t, p2, diff("mm/memcontrol.c", "line1\nline2 patched\nline3\n", "line1\nline2 patched\nline3 v2\n"))
	ids, _ = hashPatches([]string{p1, p2})
	log := b.progress.(*strings.Builder)
	log.Reset()
	if st, err = b.syncPatches(ctx, st, ids, []string{p1, p2}); err != nil {
		t.Fatal(err)
	}
	expectFile(t, file, "line1\nline2 patched\nline3 v2\n")
	if strings.Contains(log.String(), "0001.patch") {
		t.Fatalf("an unchanged leading patch must stay applied, log:\n%s", log)
	}
	saved, _ := readState(b.root)
	if len(saved.Applied) != 2 || saved.Applied[1] != ids[1] {
		t.Fatalf("state.json does not record the applied series: %+v", saved)
	}

	if st, err = b.syncPatches(ctx, st, ids[:1], []string{p1}); err != nil {
		t.Fatal(err)
	}
	expectFile(t, file, "line1\nline2 patched\nline3\n")

	bad := filepath.Join(work, "0009-bad.patch")
	write(t, bad, diff("mm/memcontrol.c", "no such\ncontext\nhere\n", "x\ny\nz\n"))
	badIDs, _ := hashPatches([]string{p1, bad})
	_, err = b.syncPatches(ctx, st, badIDs, []string{p1, bad})
	if err == nil || !strings.Contains(err.Error(), "0009-bad.patch does not apply") {
		t.Fatalf("want an error naming the patch that does not apply, got %v", err)
	}
	expectFile(t, file, "line1\nline2 patched\nline3\n")

	// Same source again: nothing is unpacked. A new source: a clean tree
	// and no object directory left from the old one.
	if _, err := b.ensureSource(ctx, "sha-1"); err != nil {
		t.Fatal(err)
	}
	expectFile(t, file, "line1\nline2 patched\nline3\n")
	st, err = b.ensureSource(ctx, "sha-2")
	if err != nil {
		t.Fatal(err)
	}
	expectFile(t, file, "line1\nline2\nline3\n")
	if len(st.Applied) != 0 {
		t.Fatalf("a fresh tree has no patches applied: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(b.root, "obj", "stale.o")); !os.IsNotExist(err) {
		t.Fatal("a new source must drop the old object directory")
	}
}

func TestMissingInputsAreNamed(t *testing.T) {
	_, err := Key(context.Background(), Inputs{})
	if err == nil || !strings.Contains(err.Error(), "SourceDeb") {
		t.Fatalf("want an error naming the missing inputs, got %v", err)
	}
}

func TestDiskCheckSaysDiskFull(t *testing.T) {
	err := checkDisk(t.TempDir(), 1<<62)
	if err == nil || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), "AGENTCGROUP_CACHE") {
		t.Fatalf("want a disk-full error with the fix, got %v", err)
	}
	if err := checkDisk(t.TempDir(), 1); err != nil {
		t.Fatal(err)
	}
}

func fakeSourceDeb(t *testing.T, work string) string {
	t.Helper()
	stage := filepath.Join(work, "stage")
	tree := filepath.Join(stage, "linux-source-9.9")
	write(t, filepath.Join(tree, "Makefile"), "all:\n")
	write(t, filepath.Join(tree, "mm", "memcontrol.c"), "line1\nline2\nline3\n")
	pkg := filepath.Join(work, "pkg")
	write(t, filepath.Join(pkg, "DEBIAN", "control"), "Package: linux-source-9.9\nVersion: 9.9-1\nArchitecture: all\nMaintainer: test <t@example.org>\nDescription: test\n")
	if err := os.MkdirAll(filepath.Join(pkg, "usr", "src"), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, stage, "tar", "-cJf", filepath.Join(pkg, "usr", "src", "linux-source-9.9.tar.xz"), "linux-source-9.9")
	deb := filepath.Join(work, "linux-source-9.9_9.9-1_all.deb")
	run(t, work, "dpkg-deb", "--root-owner-group", "-Zxz", "--build", pkg, deb)
	return deb
}

// diff returns a unified diff of one file, as patch -p1 expects.
func diff(name, from, to string) string {
	hunk := func(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }
	a, b := hunk(from), hunk(to)
	var sb strings.Builder
	sb.WriteString("--- a/" + name + "\n+++ b/" + name + "\n")
	sb.WriteString("@@ -1," + strconv.Itoa(len(a)) + " +1," + strconv.Itoa(len(b)) + " @@\n")
	for _, l := range a {
		sb.WriteString("-" + l + "\n")
	}
	for _, l := range b {
		sb.WriteString("+" + l + "\n")
	}
	return sb.String()
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func expectFile(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Fatalf("%s = %q, want %q", path, b, want)
	}
}

func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// Cancelling a build must stop every process it started (sub-makes
// included), not only the direct child.
func TestGroupCommandStopsTheWholeTree(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "grandchild")
	cmd := groupCommand(ctx, dir, os.Environ(), "sh", "-c", `sleep 300 & echo $! > `+pidFile+`; wait`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	for deadline := time.Now().Add(10 * time.Second); pid == 0; time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil && strings.TrimSpace(string(b)) != "" {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if time.Now().After(deadline) {
			t.Fatal("the grandchild never started")
		}
	}
	cancel()
	cmd.Wait()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err := syscall.Kill(pid, 0); err != nil {
			break // gone
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("grandchild %d survived the cancelled build", pid)
		}
	}
}
