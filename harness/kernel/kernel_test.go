package kernel

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/internal/fsutil"
	"github.com/ulikunitz/xz"
)

const goodPins = `
[suites.s]
url = "http://deb.example/debian"
suite = "s"
component = "main"
keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

[kernels.stock]
suite = "s"
release = "1.0-test"
modules = ["zram"]
  [[kernels.stock.packages]]
  name = "linux-image"
  version = "1.0-1"
  sha256 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
`

func writePins(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kernels.toml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadPins(t *testing.T) {
	p, err := LoadPins(writePins(t, goodPins))
	if err != nil {
		t.Fatal(err)
	}
	k, err := p.Get("stock")
	if err != nil || k.Name != "stock" || k.Release != "1.0-test" || k.Built() {
		t.Fatalf("Get: %+v, %v", k, err)
	}
	if _, err := p.Get("nope"); err == nil || !strings.Contains(err.Error(), "known: stock") {
		t.Errorf("unknown kernel error should list known ones: %v", err)
	}
}

func TestLoadPinsReportsEveryProblem(t *testing.T) {
	bad := strings.Replace(goodPins, `suite = "s"
release`, `suite = "t"
release`, 1)
	bad = strings.Replace(bad, "aaaaaaaa", "zz", 1)
	bad += "\nbogus = 1\n"
	_, err := LoadPins(writePins(t, bad))
	if err == nil {
		t.Fatal("expected errors")
	}
	for _, want := range []string{`suite "t" is not defined`, "sha256 must be 64", `unknown key "kernels.stock.packages.bogus"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestPinKeyTracksContent(t *testing.T) {
	p, _ := LoadPins(writePins(t, goodPins))
	k := p.Kernels["stock"]
	k2 := k
	k2.Packages = append([]Package(nil), k.Packages...)
	k2.Packages[0].Version = "1.0-2"
	k3 := k
	k3.Modules = []string{"zram", "virtio_blk"}
	if k.Key() == k2.Key() || k.Key() == k3.Key() {
		t.Error("changing a package version or module list must change the cache key")
	}
	if k.Key() != p.Kernels["stock"].Key() {
		t.Error("key is not stable")
	}
}

// A cache entry is trusted only with a marker that matches the pin and the
// bzImage's hash; anything else is rebuilt.
func TestCacheEntryVerification(t *testing.T) {
	p, _ := LoadPins(writePins(t, goodPins))
	pin := p.Kernels["stock"]
	dir := t.TempDir()
	if _, err := loadEntry(dir, pin, pin.Key()); !os.IsNotExist(err) {
		t.Fatalf("empty dir: want not-exist, got %v", err)
	}
	os.WriteFile(filepath.Join(dir, "bzImage"), []byte("kernel"), 0o644)
	sum, _ := fileSHA256(filepath.Join(dir, "bzImage"))
	fsutil.WriteJSON(filepath.Join(dir, markerName), marker{Key: pin.Key(), Release: "1.0-test", BzImageSHA256: sum})
	if _, err := loadEntry(dir, pin, pin.Key()); err != nil {
		t.Fatalf("valid entry rejected: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "bzImage"), []byte("kernel, truncated or corrupted"), 0o644)
	if _, err := loadEntry(dir, pin, pin.Key()); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("corrupt bzImage accepted: %v", err)
	}
	if _, err := loadEntry(dir, pin, strings.Repeat("b", 64)); err == nil {
		t.Error("entry for another pin accepted")
	}
}

// A verified deb in the cache is used without touching the network; a
// corrupt one is never returned.
func TestFetchDebUsesVerifiedCache(t *testing.T) {
	cache := t.TempDir()
	data := []byte("a debian package")
	os.MkdirAll(filepath.Join(cache, "debs"), 0o755)
	tmp := filepath.Join(cache, "x")
	os.WriteFile(tmp, data, 0o644)
	sum, _ := fileSHA256(tmp)
	final := filepath.Join(cache, "debs", sum+".deb")
	os.Rename(tmp, final)
	p, _ := LoadPins(writePins(t, goodPins))
	f := &Fetcher{Pins: p, CacheDir: cache}
	got, err := f.fetchDeb(context.Background(), p.Kernels["stock"], Package{Name: "x", Version: "1", SHA256: sum})
	if err != nil || got != final {
		t.Fatalf("fetchDeb = %q, %v", got, err)
	}
	// Corrupt it: the fetcher must not hand it out. With an unreachable
	// archive it fails rather than returning the bad file.
	os.WriteFile(final, []byte("corrupt"), 0o644)
	p.Suites["s"] = Suite{URL: "http://127.0.0.1:1/debian", Suite: "s", Component: "main", Keyring: p.Suites["s"].Keyring}
	if _, err := os.Stat(p.Suites["s"].Keyring); err != nil {
		t.Skip("needs debian-archive-keyring for the apt path")
	}
	got, err = f.fetchDeb(context.Background(), p.Kernels["stock"], Package{Name: "x", Version: "1", SHA256: sum})
	if err == nil {
		t.Fatalf("corrupt cached deb returned as %s", got)
	}
	if _, err := os.Stat(final); !os.IsNotExist(err) {
		t.Error("corrupt cached deb was left in place")
	}
}

// fakeModule builds a minimal ELF64 relocatable with a .modinfo section.
func fakeModule(t *testing.T, modinfo string) []byte {
	t.Helper()
	info := []byte(modinfo)
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	var b bytes.Buffer
	le := binary.LittleEndian
	hdr := make([]byte, 64)
	copy(hdr, "\x7fELF\x02\x01\x01")
	le.PutUint16(hdr[16:], 1)  // ET_REL
	le.PutUint16(hdr[18:], 62) // x86-64
	le.PutUint32(hdr[20:], 1)
	infoOff := 64
	strOff := infoOff + len(info)
	shOff := (strOff + len(shstr) + 7) &^ 7
	le.PutUint64(hdr[40:], uint64(shOff))
	le.PutUint16(hdr[52:], 64)
	le.PutUint16(hdr[58:], 64)
	le.PutUint16(hdr[60:], 3)
	le.PutUint16(hdr[62:], 2)
	b.Write(hdr)
	b.Write(info)
	b.Write(shstr)
	b.Write(make([]byte, shOff-b.Len()))
	sh := func(name, typ uint32, off, size int) {
		s := make([]byte, 64)
		le.PutUint32(s[0:], name)
		le.PutUint32(s[4:], typ)
		le.PutUint64(s[24:], uint64(off))
		le.PutUint64(s[32:], uint64(size))
		le.PutUint64(s[48:], 1)
		b.Write(s)
	}
	sh(0, 0, 0, 0)
	sh(1, 1, infoOff, len(info))  // .modinfo, PROGBITS
	sh(10, 3, strOff, len(shstr)) // .shstrtab, STRTAB
	return b.Bytes()
}

func writeXZ(t *testing.T, path string, data []byte) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := xz.NewWriter(f)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Close()
	f.Close()
}

func TestExtractModulesResolvesDependencies(t *testing.T) {
	tree := t.TempDir()
	writeXZ(t, filepath.Join(tree, "kernel/drivers/block/zram/zram.ko.xz"), fakeModule(t, "license=GPL\x00depends=zsmalloc,lz4-compress\x00"))
	writeXZ(t, filepath.Join(tree, "kernel/mm/zsmalloc.ko.xz"), fakeModule(t, "depends=\x00"))
	writeXZ(t, filepath.Join(tree, "kernel/lib/lz4/lz4_compress.ko.xz"), fakeModule(t, "depends=zsmalloc\x00"))
	out := t.TempDir()
	order, err := extractModules(tree, []string{"zram"}, out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(order, ",") != "zsmalloc.ko,lz4_compress.ko,zram.ko" {
		t.Fatalf("load order %v: dependencies must come first, each once", order)
	}
	b, err := os.ReadFile(filepath.Join(out, "zram.ko"))
	if err != nil || !bytes.HasPrefix(b, []byte("\x7fELF")) {
		t.Fatalf("zram.ko not written uncompressed: %v", err)
	}
	if _, err := extractModules(tree, []string{"nosuch"}, t.TempDir()); err == nil || !strings.Contains(err.Error(), "built in") {
		t.Errorf("missing module error should explain: %v", err)
	}
}
