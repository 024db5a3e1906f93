package kernel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// apt drives apt-get with a configuration of its own: its own sources list,
// package lists and cache, so the host's apt sources are never read or
// changed (adding newer suites to a host's sources can drag it into a
// partial upgrade). apt checks the signed lists and package checksums.
type apt struct {
	dir   string // private state: sources.list, lists/, cache/
	suite Suite
}

func newApt(cacheDir, name string, s Suite) (*apt, error) {
	a := &apt{dir: filepath.Join(cacheDir, "apt", name), suite: s}
	for _, d := range []string{"lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(a.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	line := fmt.Sprintf("deb [signed-by=%s] %s %s %s\n", s.Keyring, s.URL, s.Suite, s.Component)
	if err := os.WriteFile(filepath.Join(a.dir, "sources.list"), []byte(line), 0o644); err != nil {
		return nil, err
	}
	if _, err := os.Stat(s.Keyring); err != nil {
		return nil, fmt.Errorf("archive keyring %s missing: install debian-archive-keyring (make setup)", s.Keyring)
	}
	return a, nil
}

func (a *apt) options() []string {
	return []string{
		"-o", "Dir::Etc::SourceList=" + filepath.Join(a.dir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=/dev/null",
		"-o", "Dir::Etc::Preferences=/dev/null",
		"-o", "Dir::Etc::PreferencesParts=/dev/null",
		"-o", "Dir::State::Lists=" + filepath.Join(a.dir, "lists"),
		"-o", "Dir::State::Status=/dev/null",
		"-o", "Dir::Cache=" + filepath.Join(a.dir, "cache"),
		"-o", "Acquire::Languages=none",
		"-o", "Debug::NoLocking=1",
		"-o", "APT::Architecture=amd64",
		"-o", "APT::Architectures=amd64",
		"-q",
	}
}

func (a *apt) run(ctx context.Context, dir, tool string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath(tool); err != nil {
		return nil, fmt.Errorf("%s not found: the harness needs apt on a Debian host to fetch guest kernels", tool)
	}
	cmd := exec.CommandContext(ctx, tool, append(a.options(), args...)...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %v: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

func (a *apt) update(ctx context.Context) error {
	_, err := a.run(ctx, a.dir, "apt-get", "update")
	if err != nil {
		return fmt.Errorf("reading %s %s: %w (is %s reachable?)", a.suite.URL, a.suite.Suite, err, a.suite.URL)
	}
	return nil
}

// download fetches name=version into dir and returns the file's path.
func (a *apt) download(ctx context.Context, p Package, dir string) (string, error) {
	// apt drops privileges to _apt for downloads; let it write here.
	if u, err := user.Lookup("_apt"); err == nil && os.Geteuid() == 0 {
		uid, _ := strconv.Atoi(u.Uid)
		_ = os.Chown(dir, uid, -1)
	}
	_, err := a.run(ctx, dir, "apt-get", "download", p.Name+"="+p.Version)
	if err != nil {
		if strings.Contains(err.Error(), "Can't find a source") || strings.Contains(err.Error(), "Version '") ||
			strings.Contains(err.Error(), "Unable to locate") {
			return "", fmt.Errorf("%s=%s: %w of %s", p.Name, p.Version, errNotFound, a.suite.Suite)
		}
		return "", err
	}
	matches, _ := filepath.Glob(filepath.Join(dir, p.Name+"_*.deb"))
	if len(matches) != 1 {
		return "", fmt.Errorf("apt-get download %s left %d matching files in %s", p.Name, len(matches), dir)
	}
	return matches[0], nil
}

// candidate returns the newest version of name in the suite and its sha256.
func (a *apt) candidate(ctx context.Context, name string) (Package, error) {
	out, err := a.run(ctx, a.dir, "apt-cache", "show", name)
	if err != nil {
		return Package{}, err
	}
	var best Package
	for _, stanza := range strings.Split(string(out), "\n\n") {
		var p Package
		for _, line := range strings.Split(stanza, "\n") {
			k, v, ok := strings.Cut(line, ": ")
			if !ok {
				continue
			}
			switch k {
			case "Package":
				p.Name = v
			case "Version":
				p.Version = v
			case "SHA256":
				p.SHA256 = v
			}
		}
		if p.Name == name && p.Version != "" && (best.Version == "" || debVersionLess(best.Version, p.Version)) {
			best = p
		}
	}
	if best.Version == "" {
		return Package{}, fmt.Errorf("%s: %w", name, errNotFound)
	}
	return best, nil
}

// debVersionLess orders versions with dpkg itself, the one authority.
func debVersionLess(a, b string) bool {
	return exec.Command("dpkg", "--compare-versions", a, "lt", b).Run() == nil
}

var errNoDpkg = errors.New("dpkg-deb not found: unpacking guest kernels needs a Debian host")

// unpackDeb extracts a .deb's data into dir with dpkg-deb.
func unpackDeb(ctx context.Context, deb, dir string) error {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		return errNoDpkg
	}
	out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %v: %s", filepath.Base(deb), err, strings.TrimSpace(string(out)))
	}
	return nil
}
