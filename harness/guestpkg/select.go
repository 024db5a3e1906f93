package guestpkg

import (
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/agentcgroup/agentcgroup/harness/apt"
)

// pkgInfo is one package of the dependency closure apt resolved.
type pkgInfo struct {
	apt.Package
	deps     [][]string // Depends and Pre-Depends, each a list of alternatives
	provides []string
}

func parseInfo(s apt.Stanza) *pkgInfo {
	p := &pkgInfo{Package: s.Package()}
	p.deps = append(parseRelations(s["Pre-Depends"]), parseRelations(s["Depends"])...)
	for _, alts := range parseRelations(s["Provides"]) {
		p.provides = append(p.provides, alts...)
	}
	return p
}

// parseRelations reads a Depends-style field ("a (>= 1) | b:any, c [amd64]")
// into each relation's alternative names.
func parseRelations(field string) [][]string {
	var out [][]string
	for _, rel := range strings.Split(field, ",") {
		var alts []string
		for _, alt := range strings.Split(rel, "|") {
			f := strings.Fields(alt)
			if len(f) == 0 {
				continue
			}
			name, _, _ := strings.Cut(f[0], ":")
			name, _, _ = strings.Cut(name, "(")
			if name != "" {
				alts = append(alts, name)
			}
		}
		if len(alts) > 0 {
			out = append(out, alts)
		}
	}
	return out
}

// universe is the closure apt resolved, by name, with who provides what.
type universe struct {
	pkgs      map[string]*pkgInfo
	providers map[string][]string
}

func newUniverse(infos []*pkgInfo) *universe {
	u := &universe{pkgs: map[string]*pkgInfo{}, providers: map[string][]string{}}
	for _, p := range infos {
		u.pkgs[p.Name] = p
		for _, v := range p.provides {
			u.providers[v] = append(u.providers[v], p.Name)
		}
	}
	for _, ps := range u.providers {
		sort.Strings(ps)
	}
	return u
}

// pick is the member of the closure that satisfies a relation: the first
// alternative apt chose, else a package providing one.
func (u *universe) pick(alts []string) string {
	for _, a := range alts {
		if _, ok := u.pkgs[a]; ok {
			return a
		}
	}
	for _, a := range alts {
		if ps := u.providers[a]; len(ps) > 0 {
			return ps[0]
		}
	}
	return "" // satisfied outside the closure: apt needed none of them
}

// unpackFunc fetches and unpacks packages, returning each one's root.
type unpackFunc func(ctx context.Context, pkgs []apt.Package) (map[string]string, error)

// selection is what goes into the guest: the merged tree of the fetched
// packages and the paths of it the requested programs need.
type selection struct {
	tree     *tree
	include  map[string]bool
	aliases  map[string]string
	programs []string // canonical guest paths as named in the bin directories
	skipped  []string // programs left out, with the reason
	fetched  []string // packages downloaded, in order
	used     map[string]bool
}

// binDirs are where the programs of a requested package are taken from.
var binDirs = map[string]bool{"/usr/bin": true, "/usr/sbin": true}

// selectFiles fetches the requested packages and as much of their
// dependency closure as their programs' libraries need. A library's
// package is found among the dependencies of the packages already
// contributing files (the requested ones, then those whose libraries are
// used), so a dependency nothing loads (python3 for a package's helper
// scripts) is fetched but not followed; only when that runs dry are the
// dependencies of every fetched package tried. The walk ends when every
// DT_NEEDED resolves, or fails naming what is missing.
func selectFiles(ctx context.Context, requested []string, u *universe, unpack unpackFunc, logf func(string, ...any)) (*selection, error) {
	sel := &selection{tree: newTree()}
	isRequested := map[string]bool{}
	for _, n := range requested {
		if _, ok := u.pkgs[n]; !ok {
			return nil, fmt.Errorf("%s is not in the dependency closure apt resolved", n)
		}
		isRequested[n] = true
	}
	visited := map[string]bool{}
	infos := map[string]*elfInfo{}
	want := requested
	for {
		var batch []apt.Package
		for _, n := range want {
			if visited[n] {
				continue
			}
			visited[n] = true
			// Architecture-independent packages hold no machine code;
			// their dependencies are still followed below.
			if u.pkgs[n].Arch == "all" && !isRequested[n] {
				continue
			}
			batch = append(batch, u.pkgs[n].Package)
			sel.fetched = append(sel.fetched, n)
		}
		if len(batch) > 0 {
			var names []string
			for _, p := range batch {
				names = append(names, p.Name)
			}
			logf("guest packages: fetching %s", strings.Join(names, " "))
			roots, err := unpack(ctx, batch)
			if err != nil {
				return nil, err
			}
			for _, p := range batch {
				if err := sel.tree.addPackage(p.Name, roots[p.Name]); err != nil {
					return nil, err
				}
			}
		}
		c := newClosure(sel.tree)
		c.infos = infos
		progs, skipped, err := programs(c, isRequested)
		if err != nil {
			return nil, err
		}
		sel.programs, sel.skipped = nil, skipped
		for _, pr := range progs {
			c.includeChain(pr.final, pr.links)
			if err := c.addProgram(pr.final); err != nil {
				return nil, err
			}
			sel.programs = append(sel.programs, pr.path)
		}
		sel.include, sel.aliases = c.include, c.aliases
		sel.used = map[string]bool{}
		for n := range isRequested {
			sel.used[n] = true
		}
		for p := range c.include {
			sel.used[sel.tree.nodes[p].pkg] = true
		}
		missing := c.report()
		if missing == nil {
			for _, n := range requested {
				if !hasProgram(progs, sel.tree, n) {
					return nil, fmt.Errorf("package %s ships no ELF program under /usr/bin or /usr/sbin (%s); packages are added to the guest for their programs, whose libraries come along by themselves", n, skippedOf(skipped, sel.tree, n))
				}
			}
			return sel, nil
		}
		want = nextPackages(u, sel.used, visited)
		if len(want) == 0 {
			want = nextPackages(u, visited, visited)
		}
		if len(want) == 0 {
			return nil, fmt.Errorf("%w (searched the whole dependency closure of %s: %d packages)", missing, strings.Join(requested, " "), len(visited))
		}
	}
}

// nextPackages are the closure members that from's packages depend on and
// that were not visited yet, sorted.
func nextPackages(u *universe, from, visited map[string]bool) []string {
	set := map[string]bool{}
	for n := range from {
		p := u.pkgs[n]
		if p == nil {
			continue
		}
		for _, alts := range p.deps {
			if d := u.pick(alts); d != "" && !visited[d] {
				set[d] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

type program struct {
	path  string   // as named in the bin directory
	final string   // the file it resolves to
	links []string // symlinks passed on the way
}

// programs lists the ELF programs the requested packages ship in the bin
// directories, and why other files there are left out.
func programs(c *closure, requested map[string]bool) ([]program, []string, error) {
	var paths []string
	for p, n := range c.t.nodes {
		if !n.dir && requested[n.pkg] && binDirs[path.Dir(p)] {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	var progs []program
	var skipped []string
	for _, p := range paths {
		final, links, err := c.t.resolve(p)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%s (a symlink to nothing shipped: %v)", p, err))
			continue
		}
		info, err := c.info(final)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case info == nil:
			skipped = append(skipped, fmt.Sprintf("%s (not an ELF program: a script or data)", p))
		case info.class != guestClass || info.machine != guestMachine:
			skipped = append(skipped, fmt.Sprintf("%s (ELF for %v %v, not %v %v)", p, info.class, info.machine, guestClass, guestMachine))
		case info.typ != elf.ET_EXEC && info.typ != elf.ET_DYN:
			skipped = append(skipped, fmt.Sprintf("%s (ELF %v, not a program)", p, info.typ))
		default:
			progs = append(progs, program{path: p, final: final, links: links})
		}
	}
	return progs, skipped, nil
}

func hasProgram(progs []program, t *tree, pkg string) bool {
	for _, p := range progs {
		if t.nodes[p.path].pkg == pkg {
			return true
		}
	}
	return false
}

func skippedOf(skipped []string, t *tree, pkg string) string {
	var out []string
	for _, s := range skipped {
		p, _, _ := strings.Cut(s, " ")
		if n := t.nodes[p]; n != nil && n.pkg == pkg {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return "it has none there at all"
	}
	return "it has only " + strings.Join(out, ", ")
}

// write lays the selection out under root as the guest sees it. Symlinks
// point relatively at their targets' canonical paths, so the tree reads
// the same on the host and in the guest; the interpreter aliases, outside
// /usr, point absolutely.
func (s *selection) write(root string) (files int, size int64, err error) {
	paths := make([]string, 0, len(s.include))
	for p := range s.include {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		n := s.tree.nodes[p]
		dst := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return files, size, err
		}
		if n.link != "" {
			if err := os.Symlink(relLink(p, s.tree.linkTarget(p, n.link)), dst); err != nil {
				return files, size, err
			}
			continue
		}
		k, err := copyFile(n.host, dst, n.mode)
		if err != nil {
			return files, size, err
		}
		files++
		size += k
	}
	aliases := make([]string, 0, len(s.aliases))
	for a := range s.aliases {
		aliases = append(aliases, a)
	}
	sort.Strings(aliases)
	for _, a := range aliases {
		dst := filepath.Join(root, filepath.FromSlash(a))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return files, size, err
		}
		// Absolute: a relative link would climb out of /lib64 on a
		// system where /lib64 names /usr/lib64.
		if err := os.Symlink(s.aliases[a], dst); err != nil {
			return files, size, err
		}
	}
	return files, size, nil
}

// relLink is the relative symlink text at path at that names target.
func relLink(at, target string) string {
	rel, err := filepath.Rel(path.Dir(at), target)
	if err != nil {
		return target
	}
	return filepath.ToSlash(rel)
}

func copyFile(src, dst string, mode os.FileMode) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode|0o200)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(dst, mode)
	}
	return n, err
}
