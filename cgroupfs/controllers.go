package cgroupfs

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Controllers lists the controllers available in this cgroup (cgroup.controllers).
func (c Cgroup) Controllers() ([]string, error) {
	s, err := c.Read("cgroup.controllers")
	if err != nil {
		return nil, err
	}
	return strings.Fields(s), nil
}

// SubtreeControl lists the controllers enabled for this cgroup's children.
func (c Cgroup) SubtreeControl() ([]string, error) {
	s, err := c.Read("cgroup.subtree_control")
	if err != nil {
		return nil, err
	}
	return strings.Fields(s), nil
}

// EnableControllers enables ctrls in cgroup.subtree_control of the mount
// root and of every cgroup from there down to and including mount/rel, so
// children of mount/rel get them. Controllers already enabled are left alone.
// rel is taken relative to mount and cannot climb above it.
func EnableControllers(mount, rel string, ctrls ...string) error {
	rel = filepath.Clean("/" + rel)[1:]
	dirs := []string{mount}
	if rel != "" {
		cur := mount
		for _, part := range strings.Split(rel, "/") {
			cur = filepath.Join(cur, part)
			dirs = append(dirs, cur)
		}
	}
	for _, d := range dirs {
		cg := Cgroup{Path: d}
		have, err := cg.SubtreeControl()
		if err != nil {
			return err
		}
		avail, err := cg.Controllers()
		if err != nil {
			return err
		}
		var add []string
		for _, want := range ctrls {
			if contains(have, want) {
				continue
			}
			if !contains(avail, want) {
				return fmt.Errorf("cgroupfs: controller %q is not available in %s (cgroup.controllers: %q); enable it in the parent's cgroup.subtree_control or boot with it", want, d, strings.Join(avail, " "))
			}
			add = append(add, "+"+want)
		}
		if len(add) == 0 {
			continue
		}
		if err := cg.Write("cgroup.subtree_control", strings.Join(add, " ")); err != nil {
			return fmt.Errorf("%w (a cgroup with processes in it cannot enable controllers for children: the no-internal-process rule)", err)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
