// Package apt is the harness's one driver of apt-get, apt-cache and
// dpkg-deb: it reads a Debian suite through a configuration of its own
// (its own sources list, package lists and cache under the harness cache
// directory), so the host's apt sources are never read or changed (adding
// newer suites to a host's sources can drag it into a partial upgrade).
// apt checks the signed lists and every download's checksum against them.
// Guest kernels and the packages scenarios add to the guest image both
// come through here.
package apt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// Arch is the one architecture the guests run.
const Arch = "amd64"

// Suite is one Debian archive suite.
type Suite struct {
	URL       string `toml:"url"`
	Suite     string `toml:"suite"`
	Component string `toml:"component"`
	Keyring   string `toml:"keyring"`
}

func (s Suite) String() string { return fmt.Sprintf("%s %s/%s", s.URL, s.Suite, s.Component) }

// Package is one binary package version. SHA256 is the .deb's, as the
// signed package list gives it.
type Package struct {
	Name    string
	Version string
	Arch    string
	SHA256  string
}

// ErrNotFound means a package, or the asked version of it, is not in the
// suite.
var ErrNotFound = errors.New("not found in the archive")

// Apt reads one suite through the private configuration in its directory.
type Apt struct {
	dir     string // sources.list, lists/, cache/
	suite   Suite
	purpose string // what the caller fetches, for messages
}

// New prepares the private configuration for s under cacheDir/apt/name.
// purpose names what the packages are for ("guest kernels"), so a missing
// tool says who needs it.
func New(cacheDir, name string, s Suite, purpose string) (*Apt, error) {
	a := &Apt{dir: filepath.Join(cacheDir, "apt", name), suite: s, purpose: purpose}
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

// Suite is the suite a reads.
func (a *Apt) Suite() Suite { return a.suite }

func (a *Apt) options() []string {
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
		"-o", "APT::Architecture=" + Arch,
		"-o", "APT::Architectures=" + Arch,
		"-q",
	}
}

// NoToolError says a host tool apt needs is absent.
type NoToolError struct{ Tool, Purpose string }

func (e *NoToolError) Error() string {
	return fmt.Sprintf("%s not found: fetching %s needs apt and dpkg on a Debian host (apt-get, apt-cache, dpkg-deb; install the apt and dpkg packages)", e.Tool, e.Purpose)
}

func (a *Apt) run(ctx context.Context, dir, tool string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath(tool); err != nil {
		return nil, &NoToolError{Tool: tool, Purpose: a.purpose}
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

// stampName is touched after each successful update. apt dates the list
// files by the archive's Last-Modified, not by when they were fetched.
const stampName = "updated"

// Update refreshes the package lists (apt verifies their signatures).
// Concurrent updates of one configuration are serialised.
func (a *Apt) Update(ctx context.Context) error {
	unlock, err := fsutil.Lock(filepath.Join(a.dir, "update.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	// --error-on=any: by default a list that cannot be fetched is only a
	// warning, and the old lists (or none) would be used in silence.
	if _, err := a.run(ctx, a.dir, "apt-get", "update", "--error-on=any"); err != nil {
		var nt *NoToolError
		if errors.As(err, &nt) {
			return err
		}
		return fmt.Errorf("reading %s: %w (is %s reachable? a proxy goes in /etc/apt/apt.conf.d, which this configuration still reads)", a.suite, err, a.suite.URL)
	}
	return os.WriteFile(filepath.Join(a.dir, stampName), nil, 0o644)
}

// ListsAge is how long ago Update last succeeded; ok is false when the
// lists were never fetched.
func (a *Apt) ListsAge() (age time.Duration, ok bool) {
	st, err := os.Stat(filepath.Join(a.dir, stampName))
	if err != nil {
		return 0, false
	}
	return time.Since(st.ModTime()), true
}

// Stanza is one package's record in the lists, field name to value
// (continuation lines joined with newlines).
type Stanza map[string]string

// ParseStanzas splits apt-cache show output (or a Packages file) into
// records.
func ParseStanzas(text string) []Stanza {
	var out []Stanza
	cur := Stanza{}
	last := ""
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
		}
		cur, last = Stanza{}, ""
	}
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case (line[0] == ' ' || line[0] == '\t') && last != "":
			cur[last] += "\n" + strings.TrimSpace(line)
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = k
			cur[k] = strings.TrimSpace(v)
		}
	}
	flush()
	return out
}

// Package returns the stanza's name, version, architecture and sha256.
func (s Stanza) Package() Package {
	return Package{Name: s["Package"], Version: s["Version"], Arch: s["Architecture"], SHA256: s["SHA256"]}
}

// Show returns the records of the given packages, each NAME or
// NAME=VERSION. A name the suite lacks is an ErrNotFound naming it.
func (a *Apt) Show(ctx context.Context, specs ...string) ([]Stanza, error) {
	out, err := a.run(ctx, a.dir, "apt-cache", append([]string{"show"}, specs...)...)
	if err != nil {
		return nil, a.notFound(err, specs)
	}
	return ParseStanzas(string(out)), nil
}

// notFound turns apt's "no such package or version" errors into an
// ErrNotFound naming those of specs (NAME or NAME=VERSION) the message
// names; other errors pass through.
func (a *Apt) notFound(err error, specs []string) error {
	msg := err.Error()
	if !strings.Contains(msg, "Unable to locate") && !strings.Contains(msg, "No packages found") &&
		!strings.Contains(msg, "Can't find a source") && !strings.Contains(msg, "Version '") &&
		!strings.Contains(msg, "Can't select versions") {
		return err
	}
	var named []string
	for _, s := range specs {
		name, _, _ := strings.Cut(s, "=")
		if strings.Contains(msg, "'"+name+"'") || strings.Contains(msg, "'"+name+":") || strings.Contains(msg, "package "+name) {
			named = append(named, s)
		}
	}
	if len(named) == 0 {
		named = specs
	}
	return fmt.Errorf("%s: %w of %s", strings.Join(named, ", "), ErrNotFound, a.suite)
}

// Candidate returns the newest version of name in the suite.
func (a *Apt) Candidate(ctx context.Context, name string) (Package, error) {
	stanzas, err := a.Show(ctx, name)
	if err != nil {
		return Package{}, err
	}
	var best Package
	for _, s := range stanzas {
		p := s.Package()
		if p.Name == name && p.Version != "" && (best.Version == "" || VersionLess(best.Version, p.Version)) {
			best = p
		}
	}
	if best.Version == "" {
		return Package{}, fmt.Errorf("%s: %w of %s", name, ErrNotFound, a.suite)
	}
	return best, nil
}

// instRe matches a simulated installation line:
// "Inst libc6 (2.41-12 Debian:13.0/stable [amd64])".
var instRe = regexp.MustCompile(`^Inst (\S+) \((\S+) .*\[([a-z0-9]+)\]\)`)

// Resolve returns the packages apt would install for names on an empty
// system: the names and every package they depend on (Depends and
// Pre-Depends, alternatives and virtual packages chosen by apt's own
// solver; no Recommends), each at the version the suite offers. Unknown
// names are an ErrNotFound that names them.
func (a *Apt) Resolve(ctx context.Context, names []string) ([]Package, error) {
	args := append([]string{"-s", "install", "--no-install-recommends", "-o", "APT::Install-Suggests=false"}, names...)
	out, err := a.run(ctx, a.dir, "apt-get", args...)
	if err != nil {
		var nt *NoToolError
		if errors.As(err, &nt) {
			return nil, err
		}
		var unknown []string
		for _, m := range unknownRe.FindAllStringSubmatch(err.Error(), -1) {
			unknown = append(unknown, m[1]+m[2])
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return nil, fmt.Errorf("%s: %w of %s", strings.Join(unknown, ", "), ErrNotFound, a.suite)
		}
		return nil, fmt.Errorf("resolving %s in %s: %w", strings.Join(names, " "), a.suite, err)
	}
	var pkgs []Package
	for _, line := range strings.Split(string(out), "\n") {
		if m := instRe.FindStringSubmatch(line); m != nil {
			pkgs = append(pkgs, Package{Name: m[1], Version: m[2], Arch: m[3]})
		}
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("resolving %s in %s: apt planned no installation:\n%s", strings.Join(names, " "), a.suite, out)
	}
	return pkgs, nil
}

// unknownRe finds the names apt cannot install: absent ones and virtual
// ones no real package provides.
var unknownRe = regexp.MustCompile(`Unable to locate package (\S+)|Package '?([^' ]+)'? has no installation candidate`)

// Download fetches each package's .deb into dir (apt checks it against the
// signed lists) and returns their paths by package name.
func (a *Apt) Download(ctx context.Context, pkgs []Package, dir string) (map[string]string, error) {
	// apt drops privileges to _apt for downloads; let it write here.
	if u, err := user.Lookup("_apt"); err == nil && os.Geteuid() == 0 {
		uid, _ := strconv.Atoi(u.Uid)
		_ = os.Chown(dir, uid, -1)
	}
	args := []string{"download"}
	for _, p := range pkgs {
		args = append(args, p.Name+"="+p.Version)
	}
	if _, err := a.run(ctx, dir, "apt-get", args...); err != nil {
		var nt *NoToolError
		if errors.As(err, &nt) {
			return nil, err
		}
		if nf := a.notFound(err, args[1:]); nf != err {
			return nil, nf
		}
		return nil, fmt.Errorf("%w (is %s reachable?)", err, a.suite.URL)
	}
	out := map[string]string{}
	for _, p := range pkgs {
		// A package name never holds "_", so NAME_ prefixes one file.
		matches, _ := filepath.Glob(filepath.Join(dir, p.Name+"_*.deb"))
		if len(matches) != 1 {
			return nil, fmt.Errorf("apt-get download %s left %d matching files in %s", p.Name, len(matches), dir)
		}
		out[p.Name] = matches[0]
	}
	return out, nil
}

// CachedDeb returns debsDir/<sha256>.deb and nil when that file holds
// exactly that content. A missing file is an fs.ErrNotExist; a copy with
// other content is removed (so it is fetched again) and reported.
func CachedDeb(debsDir, sha256 string) (string, error) {
	final := filepath.Join(debsDir, sha256+".deb")
	sum, err := fsutil.FileSHA256(final)
	if err != nil {
		return final, err
	}
	if sum != sha256 {
		os.Remove(final)
		return final, fmt.Errorf("cached %s is corrupt (sha256 %s); removed it", filepath.Base(final), sum)
	}
	return final, nil
}

// Fetch downloads the packages and moves each to debsDir/<sha256>.deb
// once its content matches p.SHA256. Nothing unverified ever carries the
// final name. A mismatch is an error naming both hashes.
func (a *Apt) Fetch(ctx context.Context, pkgs []Package, debsDir string) (map[string]string, error) {
	if err := os.MkdirAll(debsDir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(debsDir, "download-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	got, err := a.Download(ctx, pkgs, tmp)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, p := range pkgs {
		sum, err := fsutil.FileSHA256(got[p.Name])
		if err != nil {
			return nil, err
		}
		if sum != p.SHA256 {
			return nil, &ChecksumError{Package: p, Got: sum}
		}
		final := filepath.Join(debsDir, p.SHA256+".deb")
		if err := os.Rename(got[p.Name], final); err != nil {
			return nil, err
		}
		out[p.Name] = final
	}
	return out, nil
}

// ChecksumError is a downloaded .deb whose sha256 is not the expected one.
type ChecksumError struct {
	Package Package
	Got     string
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("checksum mismatch for %s=%s: expected %s, downloaded %s", e.Package.Name, e.Package.Version, e.Package.SHA256, e.Got)
}

// VersionLess orders versions with dpkg itself, the one authority.
func VersionLess(a, b string) bool {
	return exec.Command("dpkg", "--compare-versions", a, "lt", b).Run() == nil
}

// Unpack extracts a .deb's data into dir with dpkg-deb.
func Unpack(ctx context.Context, deb, dir string) error {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		return &NoToolError{Tool: "dpkg-deb", Purpose: "Debian packages"}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %v: %s", filepath.Base(deb), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// nameRe is Debian policy's package name: lower-case letters, digits, +,
// - and ., at least two characters, starting with a letter or digit.
var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)

// CheckName says what is wrong with a package name as a scenario writes
// it, or "" when nothing is.
func CheckName(name string) string {
	switch {
	case strings.ContainsAny(name, "=:/ "):
		return fmt.Sprintf("%q: write the bare package name (no version, architecture or path); the version is the suite's", name)
	case !nameRe.MatchString(name):
		return fmt.Sprintf("%q is not a Debian package name (lower-case letters, digits, +, - and ., at least two characters)", name)
	}
	return ""
}
