// Package guestpkg adds Debian programs to the guest image. The guest's
// base image is static busybox and our static Go binaries, with no C
// library, so a program from a Debian package needs its shared libraries
// and the dynamic loader too. Ensure resolves the packages' dependency
// closure with apt (harness/apt: the project's private configuration,
// signed lists, checksummed downloads), fetches the packages whose
// libraries the programs load, checks every DT_NEEDED against the
// unpacked files, and keeps only the programs (ELF files in /usr/bin and
// /usr/sbin) and what they load: no documentation, manual pages, locales
// or helper scripts. The result is cached by content (suite, package
// names, versions and architectures) as a directory tree and as a cpio
// archive that the lab appends to the base image.
package guestpkg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/apt"
	"github.com/agentcgroup/agentcgroup/harness/initramfs"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// layout versions the cache entry and the selection rules; a change to
// either gives new entries.
const layout = 1

// listsMaxAge is how old the package lists may be before Ensure refreshes
// them. Lists are not refreshed on every run, so a run needs no network
// once its packages are cached; a version the archive has since replaced
// is noticed at download and the lists are refreshed then.
const listsMaxAge = 24 * time.Hour

// Request names packages for the guest and where they come from.
type Request struct {
	Names     []string
	SuiteName string // the suite's name in vmimages/kernels.toml; names its apt directory
	Suite     apt.Suite
	CacheDir  string
	Log       io.Writer // progress lines; nil discards
}

// Set is a verified package selection ready for the guest.
type Set struct {
	Dir      string // the cache entry
	Root     string // the files, laid out as in the guest
	Archive  string // Root as a newc cpio archive, to append after the base image
	Manifest Manifest
}

// Manifest describes a cache entry; it is written last, so an entry
// without one is incomplete.
type Manifest struct {
	Layout    int      `json:"layout"`
	Key       string   `json:"key"`
	Suite     string   `json:"suite"`
	Requested []string `json:"requested"`
	// Packages are those fetched, with the sha256 of each verified .deb;
	// Used says whether any of its files went into the guest.
	Packages []PackageRecord `json:"packages"`
	// Closure is every package apt resolved (name=version arch), the
	// entry's key.
	Closure       []string `json:"closure"`
	Programs      []string `json:"programs"`
	Skipped       []string `json:"skipped,omitempty"`
	Files         int      `json:"files"`
	Bytes         int64    `json:"bytes"`
	ArchiveSHA256 string   `json:"archive_sha256"`
}

// PackageRecord is one fetched package.
type PackageRecord struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	SHA256  string `json:"sha256"`
	Used    bool   `json:"used"`
}

// Describe is one line per used package: name=version arch sha256.
func (m Manifest) Describe() []string {
	var out []string
	for _, p := range m.Packages {
		if p.Used {
			out = append(out, fmt.Sprintf("%s=%s %s %s", p.Name, p.Version, p.Arch, p.SHA256))
		}
	}
	return out
}

const (
	manifestName = "manifest.json"
	archiveName  = "guest.cpio"
	rootName     = "root"
)

// Normalize checks package names and returns them sorted without
// duplicates.
func Normalize(names []string) ([]string, error) {
	seen := map[string]bool{}
	var out, problems []string
	for _, n := range names {
		if m := apt.CheckName(n); m != "" {
			problems = append(problems, m)
			continue
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("guest packages: %s", strings.Join(problems, "; "))
	}
	sort.Strings(out)
	return out, nil
}

// Ensure returns the cached selection for r, building it when absent.
func Ensure(ctx context.Context, r Request) (*Set, error) {
	names, err := Normalize(r.Names)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, errors.New("guest packages: none named")
	}
	logf := func(format string, a ...any) {
		if r.Log != nil {
			fmt.Fprintf(r.Log, format+"\n", a...)
		}
	}
	a, err := apt.New(r.CacheDir, r.SuiteName, r.Suite, "packages for the guest")
	if err != nil {
		return nil, err
	}
	refreshed := false
	if age, ok := a.ListsAge(); !ok || age > listsMaxAge {
		logf("guest packages: reading the package lists of %s", r.Suite)
		if err := a.Update(ctx); err != nil {
			if !ok {
				return nil, fmt.Errorf("guest packages: %w", err)
			}
			logf("guest packages: could not refresh the lists (%v); using those from %v ago", err, age.Round(time.Minute))
		} else {
			refreshed = true
		}
	}
	for {
		set, err := ensure(ctx, r, a, names, logf)
		// Lists older than the archive name versions it no longer has
		// (or lack a package added since): refresh them once and retry.
		if errors.Is(err, apt.ErrNotFound) && !refreshed {
			logf("guest packages: %v; refreshing the package lists", err)
			if uerr := a.Update(ctx); uerr != nil {
				return nil, fmt.Errorf("guest packages: %w (and refreshing the lists failed: %v)", err, uerr)
			}
			refreshed = true
			continue
		}
		if errors.Is(err, apt.ErrNotFound) {
			return nil, fmt.Errorf("guest packages: %w; check the spelling (https://packages.debian.org/%s lists the suite's packages)", err, r.Suite.Suite)
		}
		if err != nil {
			return nil, fmt.Errorf("guest packages %s: %w", strings.Join(names, " "), err)
		}
		return set, nil
	}
}

// Key identifies a closure's content: the suite, the requested names and
// every resolved package's name, version and architecture.
func Key(suite apt.Suite, names []string, closure []apt.Package) string {
	var c []string
	for _, p := range closure {
		c = append(c, p.Name+"="+p.Version+" "+p.Arch)
	}
	sort.Strings(c)
	b, err := json.Marshal(struct {
		Layout    int
		URL       string
		Suite     string
		Component string
		Requested []string
		Closure   []string
	}{layout, suite.URL, suite.Suite, suite.Component, names, c})
	if err != nil {
		panic(err) // plain values always marshal
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func ensure(ctx context.Context, r Request, a *apt.Apt, names []string, logf func(string, ...any)) (*Set, error) {
	closure, err := a.Resolve(ctx, names)
	if err != nil {
		return nil, err
	}
	key := Key(r.Suite, names, closure)
	dir := filepath.Join(r.CacheDir, "guest-packages", fmt.Sprintf("%s-%s", r.SuiteName, key[:16]))
	unlock, err := fsutil.Lock(dir + ".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if set, err := load(dir, key); err == nil {
		return set, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		logf("guest packages: cache entry %s is unusable (%v); rebuilding it", dir, err)
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
	m, err := build(ctx, r, a, names, closure, tmp, logf)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	m.Key = key
	if err := fsutil.WriteJSON(filepath.Join(tmp, manifestName), m); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	logf("guest packages: %s: %d programs, %d files, %.1f MiB in %s", strings.Join(names, " "), len(m.Programs), m.Files, float64(m.Bytes)/(1<<20), dir)
	return load(dir, key)
}

// build fills dir: fetches, selects, writes root/ and the archive, and
// checks the written tree once more.
func build(ctx context.Context, r Request, a *apt.Apt, names []string, closure []apt.Package, dir string, logf func(string, ...any)) (Manifest, error) {
	m := Manifest{Layout: layout, Suite: r.Suite.String(), Requested: names}
	specs := make([]string, 0, len(closure))
	for _, p := range closure {
		specs = append(specs, p.Name+"="+p.Version)
		m.Closure = append(m.Closure, p.Name+"="+p.Version+" "+p.Arch)
	}
	stanzas, err := a.Show(ctx, specs...)
	if err != nil {
		return m, err
	}
	var infos []*pkgInfo
	for _, p := range closure {
		var found *pkgInfo
		for _, s := range stanzas {
			if s["Package"] == p.Name && s["Version"] == p.Version && s["Architecture"] == p.Arch {
				found = parseInfo(s)
				break
			}
		}
		if found == nil || found.SHA256 == "" {
			return m, fmt.Errorf("%s=%s: the package lists have no record with a sha256 for it", p.Name, p.Version)
		}
		infos = append(infos, found)
	}
	u := newUniverse(infos)
	debs := filepath.Join(r.CacheDir, "debs")
	unpackDir := filepath.Join(dir, "unpack")
	defer os.RemoveAll(unpackDir)
	unpack := func(ctx context.Context, pkgs []apt.Package) (map[string]string, error) {
		paths := map[string]string{}
		var missing []apt.Package
		for _, p := range pkgs {
			final, err := apt.CachedDeb(debs, p.SHA256)
			switch {
			case err == nil:
				paths[p.Name] = final
			case errors.Is(err, fs.ErrNotExist):
				missing = append(missing, p)
			default:
				logf("guest packages: %v", err)
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			got, err := a.Fetch(ctx, missing, debs)
			if err != nil {
				return nil, err
			}
			for n, p := range got {
				paths[n] = p
			}
		}
		roots := map[string]string{}
		for _, p := range pkgs {
			root := filepath.Join(unpackDir, p.Name)
			if err := apt.Unpack(ctx, paths[p.Name], root); err != nil {
				return nil, err
			}
			roots[p.Name] = root
		}
		return roots, nil
	}
	sel, err := selectFiles(ctx, names, u, unpack, logf)
	if err != nil {
		return m, err
	}
	for _, n := range sel.fetched {
		p := u.pkgs[n]
		m.Packages = append(m.Packages, PackageRecord{Name: n, Version: p.Version, Arch: p.Arch, SHA256: p.SHA256, Used: sel.used[n]})
	}
	root := filepath.Join(dir, rootName)
	if m.Files, m.Bytes, err = sel.write(root); err != nil {
		return m, err
	}
	m.Programs, m.Skipped = sel.programs, sel.skipped
	for _, s := range sel.skipped {
		logf("guest packages: left out %s", s)
	}
	if err := Verify(root, m.Programs); err != nil {
		return m, fmt.Errorf("the selected files do not hold together (a bug in the selection): %w", err)
	}
	if m.ArchiveSHA256, err = writeArchive(root, filepath.Join(dir, archiveName)); err != nil {
		return m, err
	}
	return m, nil
}

// Verify checks that every program under root (a guest tree, paths taken
// as written) finds its interpreter at the path it names and every
// library it needs, transitively, by the guest loader's rules.
func Verify(root string, programs []string) error {
	t := newLiteralTree()
	if err := t.addPackage("guest", root); err != nil {
		return err
	}
	c := newClosure(t)
	for _, p := range programs {
		final, _, err := t.resolve(p)
		if err != nil {
			return fmt.Errorf("program %s: %w", p, err)
		}
		if err := c.addProgram(final); err != nil {
			return err
		}
	}
	return c.report()
}

// writeArchive writes root as a newc archive at dst and returns its sha256.
func writeArchive(root, dst string) (string, error) {
	ar := initramfs.NewArchive()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		gp := "/" + filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return ar.Add(initramfs.Dir(gp, 0o755))
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return ar.Add(initramfs.Symlink(gp, target))
		default:
			return ar.Add(initramfs.Reader(gp, uint32(info.Mode().Perm()), info.Size(), func() (io.ReadCloser, error) { return os.Open(p) }))
		}
	})
	if err != nil {
		return "", err
	}
	f, err := os.Create(dst)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := ar.WriteTo(io.MultiWriter(f, h)); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// load returns the entry in dir when its manifest matches key and its
// archive its recorded hash.
func load(dir, key string) (*Set, error) {
	b, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("bad manifest: %w", err)
	}
	if m.Key != key || m.Layout != layout {
		return nil, fmt.Errorf("manifest key %.12s (layout %d) does not match %.12s (layout %d)", m.Key, m.Layout, key, layout)
	}
	s := &Set{Dir: dir, Root: filepath.Join(dir, rootName), Archive: filepath.Join(dir, archiveName), Manifest: m}
	sum, err := fsutil.FileSHA256(s.Archive)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	if sum != m.ArchiveSHA256 {
		return nil, fmt.Errorf("archive sha256 %s does not match its manifest", sum)
	}
	return s, nil
}
