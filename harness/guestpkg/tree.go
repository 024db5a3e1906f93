package guestpkg

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// mergedDirs are the top-level directories that name their /usr
// counterparts: Debian assumes the merged-/usr layout, where /lib is
// /usr/lib. Paths are compared and written in their /usr form; only a
// program's interpreter gets its literal path as well (see selection).
var mergedDirs = []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// canonical returns p cleaned and in its /usr form.
func canonical(p string) string {
	p = path.Clean("/" + p)
	for _, d := range mergedDirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return "/usr" + p
		}
	}
	return p
}

// node is one path of the unpacked packages, merged as they would be on
// an installed system.
type node struct {
	pkg  string      // the package that ships it
	host string      // where it was unpacked
	link string      // a symlink's target as shipped; "" otherwise
	mode fs.FileMode // permission bits
	dir  bool
}

// tree is the merged view of every unpacked package, by canonical guest
// path.
type tree struct {
	nodes map[string]*node
	// canon maps a path to its key: canonical for the packages, which
	// assume merged /usr; path.Clean for a tree as the guest sees it,
	// whose /lib and /bin are directories of their own.
	canon func(string) string
}

func newTree() *tree { return &tree{nodes: map[string]*node{"/": {dir: true}}, canon: canonical} }

// newLiteralTree is a tree that takes paths as written.
func newLiteralTree() *tree {
	return &tree{nodes: map[string]*node{"/": {dir: true}}, canon: func(p string) string { return path.Clean("/" + p) }}
}

// addPackage records every path under root (a package unpacked with
// dpkg-deb -x) as shipped by pkg. Debian packages do not overlap; should
// two ship one path, the first one's copy stays, as dpkg would refuse the
// second.
func (t *tree) addPackage(pkg, root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		gp := t.canon(filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		n := &node{pkg: pkg, host: p, mode: info.Mode().Perm()}
		switch {
		case d.IsDir():
			n.dir = true
		case d.Type()&fs.ModeSymlink != 0:
			if n.link, err = os.Readlink(p); err != nil {
				return err
			}
		case !d.Type().IsRegular():
			return nil // devices, fifos: nothing a program needs
		}
		if _, ok := t.nodes[gp]; !ok {
			t.nodes[gp] = n
		}
		return nil
	})
}

var errNoPath = errors.New("no such file in the unpacked packages")

// resolve follows symlinks (in any component) through the tree and
// returns the canonical path of the file p names, and the symlinks passed
// on the way, each by canonical path.
func (t *tree) resolve(p string) (string, []string, error) {
	p = t.canon(p)
	var links []string
	for hops := 0; hops <= 40; hops++ {
		parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
		cur := ""
		redirected := false
		for i, part := range parts {
			cur += "/" + part
			n, ok := t.nodes[cur]
			if !ok {
				return "", links, fmt.Errorf("%s: %w", p, errNoPath)
			}
			if n.link != "" {
				links = append(links, cur)
				p = t.canon(path.Join(t.linkTarget(cur, n.link), strings.Join(parts[i+1:], "/")))
				redirected = true
				break
			}
			if i < len(parts)-1 && !n.dir {
				return "", links, fmt.Errorf("%s: %s is not a directory", p, cur)
			}
		}
		if !redirected {
			return p, links, nil
		}
	}
	return "", links, fmt.Errorf("%s: too many levels of symbolic links", p)
}

// linkTarget is the path (a key of t) a symlink at at names.
func (t *tree) linkTarget(at, link string) string {
	if path.IsAbs(link) {
		return t.canon(link)
	}
	return t.canon(path.Join(path.Dir(at), link))
}

// file returns the regular file at canonical path p, or nil.
func (t *tree) file(p string) *node {
	n, ok := t.nodes[p]
	if !ok || n.dir || n.link != "" {
		return nil
	}
	return n
}
