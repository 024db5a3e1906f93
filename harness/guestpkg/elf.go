package guestpkg

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// elfInfo is what the dynamic loader reads from an object.
type elfInfo struct {
	class   elf.Class
	machine elf.Machine
	typ     elf.Type
	interp  string   // PT_INTERP: the dynamic loader a program asks for
	needed  []string // DT_NEEDED
	rpath   []string // DT_RPATH (ignored by the loader when DT_RUNPATH is set)
	runpath []string // DT_RUNPATH
}

// guestClass and guestMachine are what the guest runs: an object of
// another kind is skipped by the loader, so it is by the search here too.
const (
	guestClass   = elf.ELFCLASS64
	guestMachine = elf.EM_X86_64
)

// loaderDirs is where the guest's dynamic loader looks after an object's
// own search paths, with no /etc/ld.so.cache in the guest: Debian's glibc
// searches these (as `ld.so --help` lists them). In the packages' merged
// /usr view the first and third are the second and fourth.
var loaderDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib"}

// libToken is what $LIB expands to for Debian's amd64 loader.
const libToken = "lib/x86_64-linux-gnu"

// readELF reads an object's loader-relevant fields; a file that is not ELF
// (a script, data) gives nil and no error.
func readELF(host string) (*elfInfo, error) {
	f, err := os.Open(host)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || !bytes.Equal(magic[:], []byte(elf.ELFMAG)) {
		return nil, nil
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", host, err)
	}
	defer ef.Close()
	info := &elfInfo{class: ef.Class, machine: ef.Machine, typ: ef.Type}
	hasDynamic := false
	for _, p := range ef.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return nil, fmt.Errorf("%s: reading PT_INTERP: %w", host, err)
			}
			info.interp = strings.TrimRight(string(b), "\x00")
		case elf.PT_DYNAMIC:
			hasDynamic = true
		}
	}
	if !hasDynamic {
		return info, nil
	}
	// debug/elf finds the dynamic table through the section headers; an
	// object stripped of them would look as if it needed nothing.
	if ef.SectionByType(elf.SHT_DYNAMIC) == nil {
		return nil, fmt.Errorf("%s: dynamically linked but without section headers, so its needed libraries cannot be read", host)
	}
	for _, x := range []struct {
		tag  elf.DynTag
		into *[]string
		list bool
	}{{elf.DT_NEEDED, &info.needed, false}, {elf.DT_RPATH, &info.rpath, true}, {elf.DT_RUNPATH, &info.runpath, true}} {
		vals, err := ef.DynString(x.tag)
		if err != nil {
			return nil, fmt.Errorf("%s: %v: %w", host, x.tag, err)
		}
		for _, v := range vals {
			if x.list {
				*x.into = append(*x.into, strings.Split(v, ":")...)
			} else {
				*x.into = append(*x.into, v)
			}
		}
	}
	return info, nil
}

// closure collects what programs need at run time from a tree: each
// program, its interpreter, and every library its DT_NEEDED entries name,
// searched as the guest's loader searches, transitively; with every
// symlink passed on the way.
type closure struct {
	t       *tree
	infos   map[string]*elfInfo // by canonical path
	include map[string]bool     // canonical paths of the files and symlinks the guest needs
	// aliases maps an interpreter's literal path (e.g.
	// /lib64/ld-linux-x86-64.so.2, which the kernel opens as written) to
	// its canonical file when the two differ.
	aliases map[string]string
	missing []string // what was not found, one sentence each
}

func newClosure(t *tree) *closure {
	return &closure{t: t, infos: map[string]*elfInfo{}, include: map[string]bool{}, aliases: map[string]string{}}
}

func (c *closure) info(p string) (*elfInfo, error) {
	if i, ok := c.infos[p]; ok {
		return i, nil
	}
	n := c.t.file(p)
	if n == nil {
		return nil, fmt.Errorf("%s: %w", p, errNoPath)
	}
	i, err := readELF(n.host)
	if err != nil {
		return nil, err
	}
	c.infos[p] = i
	return i, nil
}

// addProgram adds the program at canonical path prog (a file, already
// known to be ELF) and everything it loads.
func (c *closure) addProgram(prog string) error {
	exe, err := c.info(prog)
	if err != nil {
		return err
	}
	c.include[prog] = true
	if exe.interp != "" {
		final, links, err := c.t.resolve(exe.interp)
		if err != nil {
			c.missing = append(c.missing, fmt.Sprintf("%s asks for the dynamic loader %s, which no fetched package ships (%v)", prog, exe.interp, err))
		} else {
			c.includeChain(final, links)
			if lit := path.Clean(exe.interp); c.t.canon(lit) != lit {
				c.aliases[path.Clean(exe.interp)] = final
			}
		}
	}
	done := map[string]bool{prog: true}
	queue := []string{prog}
	for len(queue) > 0 {
		obj := queue[0]
		queue = queue[1:]
		oi, err := c.info(obj)
		if err != nil {
			return err
		}
		for _, soname := range oi.needed {
			lib, links, searched, err := c.find(soname, obj, oi, prog, exe)
			if err != nil {
				return err
			}
			if lib == "" {
				c.missing = append(c.missing, fmt.Sprintf("%s needs %s, found in none of %s", obj, soname, strings.Join(searched, ", ")))
				continue
			}
			c.includeChain(lib, links)
			if !done[lib] {
				done[lib] = true
				queue = append(queue, lib)
			}
		}
	}
	return nil
}

func (c *closure) includeChain(final string, links []string) {
	c.include[final] = true
	for _, l := range links {
		c.include[l] = true
	}
}

// find searches for soname needed by obj in the loader's order: DT_RPATH
// of obj and then of the program (only when obj has no DT_RUNPATH),
// DT_RUNPATH of obj, the loader's default directories. A candidate of
// another class or machine is passed over, as the loader does.
func (c *closure) find(soname, obj string, oi *elfInfo, prog string, exe *elfInfo) (string, []string, []string, error) {
	var dirs []string
	if strings.Contains(soname, "/") {
		dirs = []string{""}
	} else {
		if len(oi.runpath) == 0 {
			dirs = append(dirs, expand(oi.rpath, obj)...)
			if obj != prog {
				dirs = append(dirs, expand(exe.rpath, prog)...)
			}
		}
		dirs = append(dirs, expand(oi.runpath, obj)...)
		dirs = append(dirs, loaderDirs...)
	}
	for i, d := range dirs {
		if d != "" {
			dirs[i] = c.t.canon(d)
		}
	}
	var searched []string
	seen := map[string]bool{}
	for _, d := range dirs {
		cand := path.Join("/", d, soname)
		if seen[cand] {
			continue
		}
		seen[cand] = true
		if d != "" {
			searched = append(searched, d)
		}
		final, links, err := c.t.resolve(cand)
		if err != nil {
			continue
		}
		li, err := c.info(final)
		if err != nil {
			return "", nil, nil, err
		}
		if li == nil || li.class != guestClass || li.machine != guestMachine {
			continue
		}
		return final, links, searched, nil
	}
	return "", nil, searched, nil
}

// expand substitutes the loader's tokens in search paths: $ORIGIN (the
// object's directory) and $LIB. A path with another token ($PLATFORM) or
// a relative one (from the working directory) cannot be known here and is
// left out.
func expand(paths []string, obj string) []string {
	var out []string
	for _, p := range paths {
		for _, tok := range []string{"$ORIGIN", "${ORIGIN}"} {
			p = strings.ReplaceAll(p, tok, path.Dir(obj))
		}
		for _, tok := range []string{"$LIB", "${LIB}"} {
			p = strings.ReplaceAll(p, tok, libToken)
		}
		if p == "" || strings.Contains(p, "$") || !path.IsAbs(p) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// report is the missing-library error, or nil.
func (c *closure) report() error {
	if len(c.missing) == 0 {
		return nil
	}
	m := append([]string(nil), c.missing...)
	sort.Strings(m)
	return &MissingError{Missing: m}
}

// MissingError lists the libraries (or loaders) programs need that the
// packages and their dependencies do not ship.
type MissingError struct{ Missing []string }

func (e *MissingError) Error() string {
	return "programs would not start in the guest: " + strings.Join(e.Missing, "; ")
}
