package cgroupfs

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
)

// The agent tree: <mount>/<base>/sess_<SID>/step_<TID>.
const (
	DefaultBase   = "agentcgroup"
	SessionPrefix = "sess_"
	StepPrefix    = "step_"
	maxIDLen      = 64
)

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// ValidateID checks a session or step id: 1..64 characters from
// [A-Za-z0-9_.-], starting with a letter or digit, so it is a safe single
// path component. kind ("session", "step") names it in the error.
func ValidateID(kind, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%s id is empty; give a name such as \"s1\"", kind)
	case len(id) > maxIDLen:
		return fmt.Errorf("%s id %q is %d characters; at most %d are allowed", kind, id, len(id), maxIDLen)
	case !idRE.MatchString(id):
		return fmt.Errorf("%s id %q is invalid: use letters, digits, '_', '-', '.', starting with a letter or digit", kind, id)
	}
	return nil
}

// Tree names the agent hierarchy under one cgroup2 mount.
type Tree struct {
	Mount string // cgroup2 mount point, e.g. DefaultMount
	Base  string // directory under Mount owned by the daemon, e.g. DefaultBase
}

// DefaultTree is /sys/fs/cgroup/agentcgroup.
var DefaultTree = Tree{Mount: DefaultMount, Base: DefaultBase}

// Root is the daemon's top cgroup.
func (t Tree) Root() Cgroup { return Cgroup{Path: filepath.Join(t.Mount, t.Base)} }

// Session returns the session cgroup for sid after validating it.
func (t Tree) Session(sid string) (Cgroup, error) {
	if err := ValidateID("session", sid); err != nil {
		return Cgroup{}, err
	}
	return t.Root().Child(SessionPrefix + sid), nil
}

// Step returns the step cgroup for (sid, tid) after validating both.
func (t Tree) Step(sid, tid string) (Cgroup, error) {
	s, err := t.Session(sid)
	if err != nil {
		return Cgroup{}, err
	}
	if err := ValidateID("step", tid); err != nil {
		return Cgroup{}, err
	}
	return s.Child(StepPrefix + tid), nil
}

// ParseSessionDir returns the session id of a directory name "sess_<SID>".
func ParseSessionDir(name string) (string, bool) {
	sid, ok := strings.CutPrefix(name, SessionPrefix)
	if !ok || ValidateID("session", sid) != nil {
		return "", false
	}
	return sid, true
}

// ParseStepDir returns the step id of a directory name "step_<TID>".
func ParseStepDir(name string) (string, bool) {
	tid, ok := strings.CutPrefix(name, StepPrefix)
	if !ok || ValidateID("step", tid) != nil {
		return "", false
	}
	return tid, true
}

// ParseStepPath splits a path below the tree root ("sess_a/step_b", or an
// absolute path under Root) into its session and step ids.
func (t Tree) ParseStepPath(p string) (sid, tid string, err error) {
	rel := p
	if filepath.IsAbs(p) {
		r, err := filepath.Rel(t.Root().Path, p)
		if err != nil || strings.HasPrefix(r, "..") {
			return "", "", fmt.Errorf("cgroupfs: %s is not below %s", p, t.Root().Path)
		}
		rel = r
	}
	parts := strings.Split(filepath.Clean(rel), "/")
	if len(parts) != 2 {
		return "", "", fmt.Errorf("cgroupfs: %q is not of the form sess_<SID>/step_<TID>", rel)
	}
	sid, ok1 := ParseSessionDir(parts[0])
	tid, ok2 := ParseStepDir(parts[1])
	if !ok1 || !ok2 {
		return "", "", fmt.Errorf("cgroupfs: %q is not of the form sess_<SID>/step_<TID>", rel)
	}
	return sid, tid, nil
}

// StepRef names one step found on disk.
type StepRef struct {
	Session, Step string
	Cgroup        Cgroup
}

// Scan lists the sessions and steps present under the tree root, skipping
// directories that do not follow the naming. A missing root yields nothing.
func (t Tree) Scan() (sessions []string, steps []StepRef, err error) {
	root := t.Root()
	if !root.Exists() {
		return nil, nil, nil
	}
	names, err := root.Children()
	if err != nil {
		return nil, nil, err
	}
	for _, n := range names {
		sid, ok := ParseSessionDir(n)
		if !ok {
			continue
		}
		sessions = append(sessions, sid)
		sub, err := root.Child(n).Children()
		if err != nil {
			return nil, nil, err
		}
		for _, m := range sub {
			if tid, ok := ParseStepDir(m); ok {
				steps = append(steps, StepRef{Session: sid, Step: tid, Cgroup: root.Child(n).Child(m)})
			}
		}
	}
	return sessions, steps, nil
}
