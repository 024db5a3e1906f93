package kernel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/agentcgroup/agentcgroup/harness/apt"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// CacheDir is where fetched and built artifacts live: $AGENTCGROUP_CACHE, or
// agentcgroup under the user's cache directory.
func CacheDir() (string, error) {
	if d := os.Getenv("AGENTCGROUP_CACHE"); d != "" {
		return d, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory: set AGENTCGROUP_CACHE (%w)", err)
	}
	return filepath.Join(base, "agentcgroup"), nil
}

// Image is a kernel ready to boot.
type Image struct {
	Name    string
	Release string
	Key     string
	Dir     string
	BzImage string
	// Modules are uncompressed .ko files in load order (dependencies first).
	Modules []string
	// Vmlinux is the ELF image with BTF when we built the kernel ourselves.
	Vmlinux string
	// PVH is the uncompressed kernel with a PVH entry point, when it has
	// one: qemu boots it directly, skipping in-guest decompression.
	PVH string
}

// marker is written last into a cache entry; an entry without a valid one
// is incomplete and gets rebuilt.
type marker struct {
	Key           string   `json:"key"`
	Release       string   `json:"release"`
	BzImageSHA256 string   `json:"bzimage_sha256"`
	Modules       []string `json:"modules"`
	Vmlinux       string   `json:"vmlinux,omitempty"`
	PVH           string   `json:"pvh,omitempty"`
	PVHSHA256     string   `json:"pvh_sha256,omitempty"`
}

const markerName = "complete.json"

// Builder compiles a built kernel pin from its verified source package. It
// is provided by the kernel build package so this one stays fetch-only.
type Builder func(ctx context.Context, pin Pin, sourceDeb, cacheDir string, progress io.Writer) (bzImage, vmlinux string, err error)

// Fetcher turns pins into bootable images in a cache directory.
type Fetcher struct {
	Pins     *Pins
	CacheDir string
	Progress io.Writer // human progress lines; nil discards
	Build    Builder
}

// Ensure returns the named kernel, fetching and unpacking it if the cache
// holds no verified copy.
func (f *Fetcher) Ensure(ctx context.Context, name string) (*Image, error) {
	pin, err := f.Pins.Get(name)
	if err != nil {
		return nil, err
	}
	if pin.Built() {
		return f.ensureBuilt(ctx, pin)
	}
	key := pin.Key()
	dir := filepath.Join(f.CacheDir, "kernels", fmt.Sprintf("%s-%s-%s", pin.Name, pin.Release, key[:12]))
	unlock, err := lockFile(dir + ".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()

	if img, err := loadEntry(dir, pin, key); err == nil {
		return img, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		f.logf("kernel %s: cache entry %s is unusable (%v); rebuilding it", name, dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	m, err := f.populate(ctx, pin, tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("kernel %s: %w", name, err)
	}
	m.Key = key
	if err := fsutil.WriteJSON(filepath.Join(tmp, markerName), m); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	return loadEntry(dir, pin, key)
}

func (f *Fetcher) populate(ctx context.Context, pin Pin, dir string) (marker, error) {
	m := marker{Release: pin.Release}
	root := filepath.Join(dir, "root")
	for _, p := range pin.Packages {
		deb, err := f.fetchDeb(ctx, pin, p)
		if err != nil {
			return m, err
		}
		f.logf("kernel %s: unpacking %s", pin.Name, filepath.Base(deb))
		if err := apt.Unpack(ctx, deb, root); err != nil {
			return m, err
		}
	}
	modDir := filepath.Join(root, "usr/lib/modules", pin.Release)
	if err := os.Rename(filepath.Join(modDir, "vmlinuz"), filepath.Join(dir, "bzImage")); err != nil {
		return m, fmt.Errorf("package set has no kernel image for release %s: %w", pin.Release, err)
	}
	mods, err := extractModules(modDir, pin.Modules, filepath.Join(dir, "modules"))
	if err != nil {
		return m, err
	}
	m.Modules = mods
	if err := os.RemoveAll(root); err != nil {
		return m, err
	}
	sum, err := fileSHA256(filepath.Join(dir, "bzImage"))
	if err != nil {
		return m, err
	}
	m.BzImageSHA256 = sum
	// A kernel without a PVH entry still boots as a bzImage.
	if err := extractPVH(filepath.Join(dir, "bzImage"), filepath.Join(dir, "vmlinux.pvh")); err == nil {
		m.PVH = "vmlinux.pvh"
		if m.PVHSHA256, err = fileSHA256(filepath.Join(dir, m.PVH)); err != nil {
			return m, err
		}
	} else {
		f.logf("kernel %s: booting the bzImage (%v)", pin.Name, err)
	}
	return m, nil
}

// ensureBuilt hands a built kernel to the builder, which keeps its own
// cache keyed by every input (source, patch contents, config fragment), so a
// patch edit is never served a stale image.
func (f *Fetcher) ensureBuilt(ctx context.Context, pin Pin) (*Image, error) {
	if f.Build == nil {
		return nil, fmt.Errorf("kernel %s is built from source and no builder is configured", pin.Name)
	}
	deb, err := f.fetchDeb(ctx, pin, *pin.Source)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", pin.Name, err)
	}
	bz, vmlinux, err := f.Build(ctx, pin, deb, f.CacheDir, f.Progress)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", pin.Name, err)
	}
	sum, err := fileSHA256(bz)
	if err != nil {
		return nil, err
	}
	return &Image{Name: pin.Name, Release: pin.Release, Key: sum, Dir: filepath.Dir(bz), BzImage: bz, Vmlinux: vmlinux}, nil
}

// fetchDeb returns a verified copy of p from debs/<sha256>.deb, downloading
// it when absent. Nothing unverified ever carries the final name.
func (f *Fetcher) fetchDeb(ctx context.Context, pin Pin, p Package) (string, error) {
	debs := filepath.Join(f.CacheDir, "debs")
	final, err := apt.CachedDeb(debs, p.SHA256)
	switch {
	case err == nil:
		return final, nil
	case !errors.Is(err, os.ErrNotExist):
		f.logf("kernel %s: %v; fetching it again", pin.Name, err)
	}
	a, err := apt.New(f.CacheDir, pin.Suite, f.Pins.Suites[pin.Suite], "guest kernels")
	if err != nil {
		return "", err
	}
	f.logf("kernel %s: fetching %s=%s from %s", pin.Name, p.Name, p.Version, a.Suite().Suite)
	if err := a.Update(ctx); err != nil {
		return "", err
	}
	got, err := a.Fetch(ctx, []apt.Package{{Name: p.Name, Version: p.Version, Arch: apt.Arch, SHA256: p.SHA256}}, debs)
	var mismatch *apt.ChecksumError
	switch {
	case errors.Is(err, apt.ErrNotFound):
		return "", fmt.Errorf("%w: the suite has moved on; run `go run ./cmd/agentbench kernel bump %s` to pin the newest version (a deliberate commit)", err, pin.Name)
	case errors.As(err, &mismatch):
		return "", fmt.Errorf("%w (pinned); the download is corrupt or the archive re-issued the package (check, then move the pin deliberately)", err)
	case err != nil:
		return "", err
	}
	return got[p.Name], nil
}

func loadEntry(dir string, pin Pin, key string) (*Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, markerName))
	if err != nil {
		return nil, err
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("bad marker: %w", err)
	}
	if m.Key != key {
		return nil, fmt.Errorf("marker key %.12s does not match pin %.12s", m.Key, key)
	}
	img := &Image{Name: pin.Name, Release: m.Release, Key: key, Dir: dir, BzImage: filepath.Join(dir, "bzImage")}
	sum, err := fileSHA256(img.BzImage)
	if err != nil {
		return nil, fmt.Errorf("bzImage: %w", err)
	}
	if sum != m.BzImageSHA256 {
		return nil, fmt.Errorf("bzImage sha256 %s does not match its marker", sum)
	}
	for _, mod := range m.Modules {
		p := filepath.Join(dir, "modules", mod)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("module %s: %w", mod, err)
		}
		img.Modules = append(img.Modules, p)
	}
	if m.Vmlinux != "" {
		img.Vmlinux = filepath.Join(dir, m.Vmlinux)
	}
	if m.PVH != "" {
		img.PVH = filepath.Join(dir, m.PVH)
		sum, err := fileSHA256(img.PVH)
		if err != nil || sum != m.PVHSHA256 {
			return nil, fmt.Errorf("%s does not match its marker (%v)", m.PVH, err)
		}
	}
	return img, nil
}

var fileSHA256 = fsutil.FileSHA256

// lockFile serialises work on one cache entry across processes.
var lockFile = fsutil.Lock

func (f *Fetcher) logf(format string, a ...any) {
	if f.Progress != nil {
		fmt.Fprintf(f.Progress, format+"\n", a...)
	}
}
