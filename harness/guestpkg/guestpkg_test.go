package guestpkg

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/harness/apt"
)

// elfSpec describes a synthetic ELF object.
type elfSpec struct {
	class   elf.Class // default 64-bit
	typ     elf.Type  // default ET_DYN
	interp  string
	needed  []string
	runpath string
	rpath   string
}

// makeELF writes a minimal little-endian x86-64 (or i386) ELF object with
// the program and section headers the loader-relevant fields live in:
// PT_INTERP, PT_DYNAMIC, .dynstr and .dynamic.
func makeELF(t *testing.T, s elfSpec) []byte {
	t.Helper()
	if s.class == 0 {
		s.class = elf.ELFCLASS64
	}
	if s.typ == 0 {
		s.typ = elf.ET_DYN
	}
	is64 := s.class == elf.ELFCLASS64
	le := binary.LittleEndian
	ehsize, phent, shent := 52, 32, 40
	machine := elf.EM_386
	if is64 {
		ehsize, phent, shent = 64, 56, 64
		machine = elf.EM_X86_64
	}
	dynamic := len(s.needed) > 0 || s.runpath != "" || s.rpath != ""
	nph := 0
	if s.interp != "" {
		nph++
	}
	if dynamic {
		nph++
	}
	// data: interp, dynstr, dynamic, shstrtab, then section headers
	off := ehsize + nph*phent
	interpOff := off
	interp := []byte(s.interp + "\x00")
	if s.interp == "" {
		interp = nil
	}
	off += len(interp)
	dynstr := []byte{0}
	type dent struct {
		tag elf.DynTag
		val uint64
	}
	var dents []dent
	str := func(v string) uint64 {
		o := len(dynstr)
		dynstr = append(dynstr, v...)
		dynstr = append(dynstr, 0)
		return uint64(o)
	}
	for _, n := range s.needed {
		dents = append(dents, dent{elf.DT_NEEDED, str(n)})
	}
	if s.runpath != "" {
		dents = append(dents, dent{elf.DT_RUNPATH, str(s.runpath)})
	}
	if s.rpath != "" {
		dents = append(dents, dent{elf.DT_RPATH, str(s.rpath)})
	}
	dents = append(dents, dent{elf.DT_NULL, 0})
	dynstrOff := off
	off += len(dynstr)
	off = (off + 7) &^ 7
	dynOff := off
	var dyn bytes.Buffer
	for _, d := range dents {
		if is64 {
			binary.Write(&dyn, le, uint64(d.tag))
			binary.Write(&dyn, le, d.val)
		} else {
			binary.Write(&dyn, le, uint32(d.tag))
			binary.Write(&dyn, le, uint32(d.val))
		}
	}
	off += dyn.Len()
	shstr := []byte("\x00.dynstr\x00.dynamic\x00.shstrtab\x00")
	shstrOff := off
	off += len(shstr)
	off = (off + 7) &^ 7
	shOff := off
	nsh := 2 // null, shstrtab
	if dynamic {
		nsh = 4
	}

	var b bytes.Buffer
	hdr := make([]byte, ehsize)
	copy(hdr, elf.ELFMAG)
	hdr[4] = byte(s.class)
	hdr[5] = byte(elf.ELFDATA2LSB)
	hdr[6] = byte(elf.EV_CURRENT)
	le.PutUint16(hdr[16:], uint16(s.typ))
	le.PutUint16(hdr[18:], uint16(machine))
	le.PutUint32(hdr[20:], uint32(elf.EV_CURRENT))
	if is64 {
		le.PutUint64(hdr[32:], uint64(ehsize)) // phoff
		le.PutUint64(hdr[40:], uint64(shOff))
		le.PutUint16(hdr[52:], uint16(ehsize))
		le.PutUint16(hdr[54:], uint16(phent))
		le.PutUint16(hdr[56:], uint16(nph))
		le.PutUint16(hdr[58:], uint16(shent))
		le.PutUint16(hdr[60:], uint16(nsh))
		le.PutUint16(hdr[62:], uint16(nsh-1))
	} else {
		le.PutUint32(hdr[28:], uint32(ehsize))
		le.PutUint32(hdr[32:], uint32(shOff))
		le.PutUint16(hdr[40:], uint16(ehsize))
		le.PutUint16(hdr[42:], uint16(phent))
		le.PutUint16(hdr[44:], uint16(nph))
		le.PutUint16(hdr[46:], uint16(shent))
		le.PutUint16(hdr[48:], uint16(nsh))
		le.PutUint16(hdr[50:], uint16(nsh-1))
	}
	b.Write(hdr)
	ph := func(typ elf.ProgType, o, size int) {
		p := make([]byte, phent)
		le.PutUint32(p[0:], uint32(typ))
		if is64 {
			le.PutUint64(p[8:], uint64(o))
			le.PutUint64(p[16:], uint64(o))
			le.PutUint64(p[32:], uint64(size))
			le.PutUint64(p[40:], uint64(size))
		} else {
			le.PutUint32(p[4:], uint32(o))
			le.PutUint32(p[8:], uint32(o))
			le.PutUint32(p[16:], uint32(size))
			le.PutUint32(p[20:], uint32(size))
		}
		b.Write(p)
	}
	if s.interp != "" {
		ph(elf.PT_INTERP, interpOff, len(interp))
	}
	if dynamic {
		ph(elf.PT_DYNAMIC, dynOff, dyn.Len())
	}
	b.Write(interp)
	b.Write(dynstr)
	b.Write(make([]byte, dynOff-b.Len()))
	b.Write(dyn.Bytes())
	b.Write(shstr)
	b.Write(make([]byte, shOff-b.Len()))
	sh := func(name uint32, typ elf.SectionType, o, size int, link uint32, entsize int) {
		h := make([]byte, shent)
		le.PutUint32(h[0:], name)
		le.PutUint32(h[4:], uint32(typ))
		if is64 {
			le.PutUint64(h[24:], uint64(o))
			le.PutUint64(h[32:], uint64(size))
			le.PutUint32(h[40:], link)
			le.PutUint64(h[48:], 1)
			le.PutUint64(h[56:], uint64(entsize))
		} else {
			le.PutUint32(h[16:], uint32(o))
			le.PutUint32(h[20:], uint32(size))
			le.PutUint32(h[24:], link)
			le.PutUint32(h[32:], 1)
			le.PutUint32(h[36:], uint32(entsize))
		}
		b.Write(h)
	}
	sh(0, elf.SHT_NULL, 0, 0, 0, 0)
	if dynamic {
		sh(1, elf.SHT_STRTAB, dynstrOff, len(dynstr), 0, 0)
		entsize := 8
		if is64 {
			entsize = 16
		}
		sh(9, elf.SHT_DYNAMIC, dynOff, dyn.Len(), 1, entsize)
		sh(18, elf.SHT_STRTAB, shstrOff, len(shstr), 0, 0)
	} else {
		sh(18, elf.SHT_STRTAB, shstrOff, len(shstr), 0, 0)
	}
	return b.Bytes()
}

// entry is one path of a synthetic package: file content or a symlink.
type entry struct {
	data []byte
	link string
	mode os.FileMode
}

func file(b []byte) entry   { return entry{data: b, mode: 0o644} }
func prog(b []byte) entry   { return entry{data: b, mode: 0o755} }
func link(to string) entry  { return entry{link: to} }
func script(s string) entry { return entry{data: []byte(s), mode: 0o755} }

// writeTree lays entries out under root as dpkg-deb -x would.
func writeTree(t *testing.T, root string, files map[string]entry) {
	t.Helper()
	for p, e := range files {
		dst := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if e.link != "" {
			err = os.Symlink(e.link, dst)
		} else {
			err = os.WriteFile(dst, e.data, e.mode)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

const ld = "/lib64/ld-linux-x86-64.so.2"

// libc6 is a package shaped like Debian's: the loader in the multiarch
// directory, /usr/lib64 pointing at it.
func libc6(t *testing.T) map[string]entry {
	return map[string]entry{
		"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2": prog(makeELF(t, elfSpec{})),
		"/usr/lib64/ld-linux-x86-64.so.2":                link("../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
		"/usr/lib/x86_64-linux-gnu/libc.so.6":            file(makeELF(t, elfSpec{needed: []string{"ld-linux-x86-64.so.2"}})),
		"/usr/share/doc/libc6/copyright":                 file([]byte("text")),
	}
}

func treeOf(t *testing.T, pkgs map[string]map[string]entry) *tree {
	t.Helper()
	tr := newTree()
	names := make([]string, 0, len(pkgs))
	for n := range pkgs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		root := filepath.Join(t.TempDir(), n)
		writeTree(t, root, pkgs[n])
		if err := tr.addPackage(n, root); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"/lib64/ld-linux-x86-64.so.2": "/usr/lib64/ld-linux-x86-64.so.2",
		"/bin/sh":                     "/usr/bin/sh",
		"/lib":                        "/usr/lib",
		"/library/x":                  "/library/x",
		"/usr/lib/../lib/x":           "/usr/lib/x",
		"etc/x":                       "/etc/x",
	} {
		if got := canonical(in); got != want {
			t.Errorf("canonical(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestResolveFollowsSymlinksInTheTree(t *testing.T) {
	tr := treeOf(t, map[string]map[string]entry{
		"libc6": libc6(t),
		"a": {
			"/usr/lib/x86_64-linux-gnu/libfoo.so.1":     link("libfoo.so.1.2.3"),
			"/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3": file([]byte("x")),
			"/lib/x86_64-linux-gnu/libold.so.1":         link("/lib/x86_64-linux-gnu/libfoo.so.1"),
			"/usr/lib/a/dirlink":                        link("../x86_64-linux-gnu"),
			"/usr/lib/a/loop1":                          link("loop2"),
			"/usr/lib/a/loop2":                          link("loop1"),
			"/usr/lib/a/dangling":                       link("nothing"),
		},
	})
	cases := []struct {
		in, want string
		links    []string
	}{
		{ld, "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", []string{"/usr/lib64/ld-linux-x86-64.so.2"}},
		{"/usr/lib/x86_64-linux-gnu/libfoo.so.1", "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3", []string{"/usr/lib/x86_64-linux-gnu/libfoo.so.1"}},
		{"/lib/x86_64-linux-gnu/libold.so.1", "/usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3",
			[]string{"/usr/lib/x86_64-linux-gnu/libold.so.1", "/usr/lib/x86_64-linux-gnu/libfoo.so.1"}},
		{"/usr/lib/a/dirlink/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", []string{"/usr/lib/a/dirlink"}},
	}
	for _, c := range cases {
		got, links, err := tr.resolve(c.in)
		if err != nil || got != c.want || !reflect.DeepEqual(links, c.links) {
			t.Errorf("resolve(%s) = %s %v %v, want %s %v", c.in, got, links, err, c.want, c.links)
		}
	}
	for _, bad := range []string{"/usr/lib/a/loop1", "/usr/lib/a/dangling", "/usr/lib/x86_64-linux-gnu/libc.so.6/x", "/nope"} {
		if got, _, err := tr.resolve(bad); err == nil {
			t.Errorf("resolve(%s) = %s, want an error", bad, got)
		}
	}
}

func TestParseRelations(t *testing.T) {
	got := parseRelations("libc6 (>= 2.39), libgbm1 (>= 8.1~0) | libgbm-alt, python3:any, foo [amd64],")
	want := [][]string{{"libc6"}, {"libgbm1", "libgbm-alt"}, {"python3"}, {"foo"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if parseRelations("") != nil {
		t.Error("an empty field has no relations")
	}
}

func TestClosureResolvesNeededLibrariesAsTheLoader(t *testing.T) {
	tr := treeOf(t, map[string]map[string]entry{
		"libc6": libc6(t),
		"app": {
			"/usr/bin/app":            prog(makeELF(t, elfSpec{interp: ld, needed: []string{"libfoo.so.1", "libpriv.so", "libc.so.6"}, runpath: "$ORIGIN/../lib/app"})),
			"/usr/lib/app/libpriv.so": file(makeELF(t, elfSpec{needed: []string{"libc.so.6"}})),
		},
		"libfoo1": {
			"/usr/lib/x86_64-linux-gnu/libfoo.so.1":     link("libfoo.so.1.0.0"),
			"/usr/lib/x86_64-linux-gnu/libfoo.so.1.0.0": file(makeELF(t, elfSpec{needed: []string{"libbar.so.2", "libc.so.6"}})),
		},
		// A 32-bit copy in the first default directory, which the loader
		// passes over, and the right one in /lib (merged: /usr/lib),
		// where an older package still puts it.
		"libbar2-i386": {
			"/usr/lib/x86_64-linux-gnu/libbar.so.2": file(makeELF(t, elfSpec{class: elf.ELFCLASS32})),
		},
		"libbar2": {
			"/lib/libbar.so.2": file(makeELF(t, elfSpec{needed: []string{"libc.so.6"}})),
		},
	})
	c := newClosure(tr)
	if err := c.addProgram("/usr/bin/app"); err != nil {
		t.Fatal(err)
	}
	if err := c.report(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for p := range c.include {
		got = append(got, p)
	}
	sort.Strings(got)
	want := []string{
		"/usr/bin/app",
		"/usr/lib/app/libpriv.so",
		"/usr/lib/libbar.so.2",
		"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"/usr/lib/x86_64-linux-gnu/libc.so.6",
		"/usr/lib/x86_64-linux-gnu/libfoo.so.1",
		"/usr/lib/x86_64-linux-gnu/libfoo.so.1.0.0",
		"/usr/lib64/ld-linux-x86-64.so.2",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("included\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if c.aliases[ld] != "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" {
		t.Errorf("the interpreter's literal path must be kept: aliases %v", c.aliases)
	}
}

func TestClosureReportsWhatIsMissing(t *testing.T) {
	tr := treeOf(t, map[string]map[string]entry{
		"app": {"/usr/bin/app": prog(makeELF(t, elfSpec{interp: ld, needed: []string{"libgone.so.3"}}))},
	})
	c := newClosure(tr)
	if err := c.addProgram("/usr/bin/app"); err != nil {
		t.Fatal(err)
	}
	err := c.report()
	var me *MissingError
	if !errors.As(err, &me) || len(me.Missing) != 2 {
		t.Fatalf("got %v, want the loader and libgone.so.3 missing", err)
	}
	msg := err.Error()
	for _, want := range []string{"/usr/bin/app needs libgone.so.3", "/usr/lib/x86_64-linux-gnu, /usr/lib", "dynamic loader " + ld} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
}

func TestReadELFRefusesDynamicObjectsWithoutSections(t *testing.T) {
	b := makeELF(t, elfSpec{needed: []string{"libc.so.6"}})
	// Drop the section headers: e_shoff, e_shnum, e_shstrndx = 0.
	binary.LittleEndian.PutUint64(b[40:], 0)
	binary.LittleEndian.PutUint16(b[60:], 0)
	binary.LittleEndian.PutUint16(b[62:], 0)
	p := filepath.Join(t.TempDir(), "obj")
	os.WriteFile(p, b, 0o644)
	if _, err := readELF(p); err == nil || !strings.Contains(err.Error(), "section headers") {
		t.Errorf("got %v, want a refusal: its needed libraries would read as none", err)
	}
	os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755)
	if i, err := readELF(p); i != nil || err != nil {
		t.Errorf("a script: %v %v, want nil, nil", i, err)
	}
}

// repo is a synthetic archive: packages with relations and contents.
type repo struct {
	t        *testing.T
	pkgs     map[string]*pkgInfo
	files    map[string]map[string]entry
	unpacked []string
}

func (r *repo) add(name, arch, depends, provides string, files map[string]entry) {
	s := apt.Stanza{"Package": name, "Version": "1", "Architecture": arch, "SHA256": strings.Repeat("a", 64), "Depends": depends, "Provides": provides}
	r.pkgs[name] = parseInfo(s)
	r.files[name] = files
}

func (r *repo) unpack(ctx context.Context, pkgs []apt.Package) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range pkgs {
		root := filepath.Join(r.t.TempDir(), p.Name)
		writeTree(r.t, root, r.files[p.Name])
		out[p.Name] = root
		r.unpacked = append(r.unpacked, p.Name)
	}
	return out, nil
}

func (r *repo) universe() *universe {
	var infos []*pkgInfo
	for _, p := range r.pkgs {
		infos = append(infos, p)
	}
	return newUniverse(infos)
}

func newRepo(t *testing.T) *repo {
	r := &repo{t: t, pkgs: map[string]*pkgInfo{}, files: map[string]map[string]entry{}}
	r.add("libc6", "amd64", "libgcc-s1", "", libc6(t))
	r.add("libgcc-s1", "amd64", "libc6", "", map[string]entry{"/usr/lib/x86_64-linux-gnu/libgcc_s.so.1": file(makeELF(t, elfSpec{needed: []string{"libc.so.6"}}))})
	// The tool: a program, a helper script, docs; it depends on a
	// library, on python3 for the script, and on a data package.
	r.add("tool", "amd64", "libc6 (>= 2.39), libfoo1 | libfoo-alt, python3:any, tool-data", "", map[string]entry{
		"/usr/bin/tool":                 prog(makeELF(t, elfSpec{interp: ld, needed: []string{"libfoo.so.1", "libc.so.6"}})),
		"/usr/sbin/tool-helper":         script("#!/usr/bin/python3\n"),
		"/usr/share/man/man1/tool.1.gz": file([]byte("man")),
	})
	r.add("libfoo1", "amd64", "libc6, libbar-virtual", "", map[string]entry{
		"/usr/lib/x86_64-linux-gnu/libfoo.so.1": file(makeELF(t, elfSpec{needed: []string{"libbar.so.0", "libc.so.6"}})),
	})
	// libbar.so.0 comes from a package that only provides a virtual
	// name libfoo1 depends on.
	r.add("libbar0", "amd64", "libc6", "libbar-virtual", map[string]entry{
		"/usr/lib/x86_64-linux-gnu/libbar.so.0":    link("libbar.so.0.1"),
		"/usr/lib/x86_64-linux-gnu/libbar.so.0.1":  file(makeELF(t, elfSpec{needed: []string{"libc.so.6"}})),
		"/usr/lib/x86_64-linux-gnu/libunused.so.1": file(makeELF(t, elfSpec{})),
	})
	r.add("python3", "amd64", "libpython3.13", "", map[string]entry{"/usr/bin/python3": prog(makeELF(t, elfSpec{interp: ld, needed: []string{"libpython3.13.so.1"}}))})
	r.add("libpython3.13", "amd64", "libc6", "", map[string]entry{"/usr/lib/x86_64-linux-gnu/libpython3.13.so.1": file(makeELF(t, elfSpec{}))})
	r.add("tool-data", "all", "", "", map[string]entry{"/usr/share/tool/data": file([]byte("d"))})
	return r
}

func TestSelectFetchesOnlyWhatTheProgramsLoad(t *testing.T) {
	r := newRepo(t)
	sel, err := selectFiles(context.Background(), []string{"tool"}, r.universe(), r.unpack, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	// Round 1 the tool, round 2 its direct dependencies, round 3
	// libfoo1's (libbar0 via the virtual name). python3 is fetched as a
	// direct dependency but loads nothing the tool needs, so its own
	// dependencies are not; tool-data is architecture-independent.
	wantFetched := []string{"tool", "libc6", "libfoo1", "python3", "libbar0", "libgcc-s1"}
	if !reflect.DeepEqual(sel.fetched, wantFetched) {
		t.Errorf("fetched %v, want %v", sel.fetched, wantFetched)
	}
	if slices.Contains(r.unpacked, "libpython3.13") || slices.Contains(r.unpacked, "tool-data") {
		t.Errorf("unpacked %v: nothing loads libpython, and tool-data holds no machine code", r.unpacked)
	}
	var used []string
	for n, ok := range sel.used {
		if ok {
			used = append(used, n)
		}
	}
	sort.Strings(used)
	if want := []string{"libbar0", "libc6", "libfoo1", "tool"}; !reflect.DeepEqual(used, want) {
		t.Errorf("used %v, want %v", used, want)
	}
	if !reflect.DeepEqual(sel.programs, []string{"/usr/bin/tool"}) {
		t.Errorf("programs %v", sel.programs)
	}
	if len(sel.skipped) != 1 || !strings.Contains(sel.skipped[0], "/usr/sbin/tool-helper (not an ELF program") {
		t.Errorf("skipped %v, want the helper script", sel.skipped)
	}

	root := filepath.Join(t.TempDir(), "root")
	files, _, err := sel.write(root)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			got = append(got, "/"+rel)
		}
		return nil
	})
	want := []string{
		ld, // the interpreter at the path the kernel opens
		"/usr/bin/tool",
		"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"/usr/lib/x86_64-linux-gnu/libbar.so.0",
		"/usr/lib/x86_64-linux-gnu/libbar.so.0.1",
		"/usr/lib/x86_64-linux-gnu/libc.so.6",
		"/usr/lib/x86_64-linux-gnu/libfoo.so.1",
		"/usr/lib64/ld-linux-x86-64.so.2",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("written\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if files != 5 {
		t.Errorf("%d regular files written, want 5", files)
	}
	if l, _ := os.Readlink(filepath.Join(root, ld)); l != "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" {
		t.Errorf("%s -> %q", ld, l)
	}
	if st, _ := os.Stat(filepath.Join(root, "usr/bin/tool")); st == nil || st.Mode().Perm() != 0o755 {
		t.Errorf("the program lost its mode: %v", st)
	}
	if err := Verify(root, sel.programs); err != nil {
		t.Fatalf("the written tree: %v", err)
	}
	os.Remove(filepath.Join(root, "usr/lib/x86_64-linux-gnu/libbar.so.0.1"))
	if err := Verify(root, sel.programs); err == nil || !strings.Contains(err.Error(), "libbar.so.0") {
		t.Errorf("a tree without libbar: %v, want libbar.so.0 missing", err)
	}
	os.Remove(filepath.Join(root, ld))
	if err := Verify(root, sel.programs); err == nil || !strings.Contains(err.Error(), "dynamic loader "+ld) {
		t.Errorf("a tree without %s: %v", ld, err)
	}
}

func TestSelectFailsNamingTheMissingLibrary(t *testing.T) {
	r := newRepo(t)
	r.files["libbar0"] = map[string]entry{"/usr/lib/x86_64-linux-gnu/libother.so.0": file(makeELF(t, elfSpec{}))}
	_, err := selectFiles(context.Background(), []string{"tool"}, r.universe(), r.unpack, t.Logf)
	var me *MissingError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "libfoo.so.1 needs libbar.so.0") || !strings.Contains(err.Error(), "whole dependency closure") {
		t.Fatalf("got %v, want libbar.so.0 named as missing after searching the closure", err)
	}
}

func TestSelectReachesLibrariesBehindAnIntermediatePackage(t *testing.T) {
	r := newRepo(t)
	// tool now depends on libfoo1 only through a metapackage with no
	// files, which therefore never contributes.
	r.add("tool", "amd64", "libc6, foo-meta", "", r.files["tool"])
	r.add("foo-meta", "amd64", "libfoo1", "", map[string]entry{"/usr/share/doc/foo-meta/README": file([]byte("x"))})
	sel, err := selectFiles(context.Background(), []string{"tool"}, r.universe(), r.unpack, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.used["libfoo1"] || sel.used["foo-meta"] {
		t.Errorf("used %v: libfoo1 found through foo-meta, which itself adds nothing", sel.used)
	}
}

func TestSelectRefusesAPackageWithoutPrograms(t *testing.T) {
	r := newRepo(t)
	_, err := selectFiles(context.Background(), []string{"tool-data"}, r.universe(), r.unpack, t.Logf)
	if err == nil || !strings.Contains(err.Error(), "ships no ELF program") {
		t.Errorf("got %v", err)
	}
}

func TestKeyAndNormalize(t *testing.T) {
	s := apt.Suite{URL: "http://deb.debian.org/debian", Suite: "trixie", Component: "main"}
	a := []apt.Package{{Name: "b", Version: "1", Arch: "amd64"}, {Name: "a", Version: "2", Arch: "all"}}
	b := []apt.Package{a[1], a[0]}
	if Key(s, []string{"x"}, a) != Key(s, []string{"x"}, b) {
		t.Error("the key depends on the order apt lists packages in")
	}
	c := []apt.Package{a[0], {Name: "a", Version: "3", Arch: "all"}}
	if Key(s, []string{"x"}, a) == Key(s, []string{"x"}, c) {
		t.Error("a new version must give a new key")
	}
	got, err := Normalize([]string{"stress-ng", "rt-tests", "stress-ng"})
	if err != nil || !reflect.DeepEqual(got, []string{"rt-tests", "stress-ng"}) {
		t.Errorf("Normalize: %v %v", got, err)
	}
	if _, err := Normalize([]string{"stress-ng=1.0", "Bad"}); err == nil || !strings.Contains(err.Error(), "bare package name") || !strings.Contains(err.Error(), "not a Debian package name") {
		t.Errorf("Normalize must report every bad name: %v", err)
	}
}

func TestWriteArchiveIsCanonical(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]entry{
		"/usr/bin/tool":      prog([]byte("x")),
		"/lib64/ld.so":       link("../usr/lib/ld.so"),
		"/usr/lib/ld.so":     prog([]byte("y")),
		"/usr/lib/libz.so.1": file([]byte("z")),
	})
	dir := t.TempDir()
	s1, err := writeArchive(root, filepath.Join(dir, "a.cpio"))
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := writeArchive(root, filepath.Join(dir, "b.cpio"))
	if s1 != s2 {
		t.Error("the same tree gave different archives")
	}
	b, _ := os.ReadFile(filepath.Join(dir, "a.cpio"))
	for _, want := range []string{"usr/bin/tool", "lib64/ld.so", "../usr/lib/ld.so", "TRAILER!!!"} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("archive lacks %q", want)
		}
	}
}

// request is a Request for an archive that is not there, with a keyring
// file that is (apt.New checks it).
func request(t *testing.T, url string) Request {
	keyring := filepath.Join(t.TempDir(), "keyring.gpg")
	os.WriteFile(keyring, nil, 0o644)
	return Request{Names: []string{"stress-ng"}, SuiteName: "test", CacheDir: t.TempDir(),
		Suite: apt.Suite{URL: url, Suite: "trixie", Component: "main", Keyring: keyring}}
}

func TestEnsureWithoutAptSaysSo(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Ensure(context.Background(), request(t, "http://127.0.0.1:1/debian"))
	if err == nil || !strings.Contains(err.Error(), "apt-get not found") || !strings.Contains(err.Error(), "Debian host") {
		t.Errorf("got %v, want the missing tool and what provides it", err)
	}
}

func TestEnsureWithUnreachableArchiveSaysSo(t *testing.T) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("needs apt-get on the host (a Debian host; make setup)")
	}
	_, err := Ensure(context.Background(), request(t, "http://127.0.0.1:1/debian"))
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "is http://127.0.0.1:1/debian reachable?") {
		t.Errorf("got %v, want the archive named as unreachable", err)
	}
}
