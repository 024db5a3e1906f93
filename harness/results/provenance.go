package results

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// Provenance records what produced a run, so numbers can be traced to code,
// kernel and host.
type Provenance struct {
	Scenario       string            `json:"scenario"`
	ScenarioPath   string            `json:"scenario_path"`
	ScenarioSHA256 string            `json:"scenario_sha256"`
	Started        time.Time         `json:"started"`
	GitCommit      string            `json:"git_commit"`
	GitDirty       bool              `json:"git_dirty"`
	Kernel         KernelInfo        `json:"kernel"`
	GuestPackages  []string          `json:"guest_packages,omitempty"` // [guest] packages whose files the guests got: name=version arch .deb sha256
	BPFObjects     map[string]string `json:"bpf_objects"`              // path -> sha256
	Qemu           string            `json:"qemu"`
	Accelerators   []string          `json:"accelerators"` // as reported by the trials that ran
	HostCPU        string            `json:"host_cpu"`
	HostCPUs       int               `json:"host_cpus"`
	HostKernel     string            `json:"host_kernel"`
	GoVersion      string            `json:"go_version"`
	Seed           uint64            `json:"seed"`
	TrialSeeds     map[string]uint64 `json:"trial_seeds"`
	Unavailable    map[string]string `json:"unavailable,omitempty"` // configuration -> why it could not run
	Resumed        []Resumption      `json:"resumed,omitempty"`
}

// Resumption is one `agentbench eval --resume` of a run: when, and which
// code ran the trials it finished. A run resumed after the code moved on
// mixes commits, and only its resumptions say so.
type Resumption struct {
	At        time.Time `json:"at"`
	GitCommit string    `json:"git_commit"`
	GitDirty  bool      `json:"git_dirty"`
}

// UnmarshalJSON also accepts the bare timestamp earlier runs recorded for
// a resumption (its commit is then unknown).
func (r *Resumption) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		*r = Resumption{}
		return json.Unmarshal(b, &r.At)
	}
	type plain Resumption
	return json.Unmarshal(b, (*plain)(r))
}

// Commit is the code that runs trials from now on: the last resumption's,
// or the run's own when it was never resumed.
func (p *Provenance) Commit() (commit string, dirty bool) {
	if n := len(p.Resumed); n > 0 {
		return p.Resumed[n-1].GitCommit, p.Resumed[n-1].GitDirty
	}
	return p.GitCommit, p.GitDirty
}

// KernelInfo identifies the guest kernel.
type KernelInfo struct {
	Name       string   `json:"name"`
	Release    string   `json:"release"`
	PinSHA256  string   `json:"pin_sha256"`  // of the pin as written in kernels.toml (canonical JSON)
	Config     string   `json:"config"`      // what the config hash covers
	ConfigHash string   `json:"config_hash"` // sha256
	Packages   []string `json:"packages"`    // name=version sha256
}

// WriteProvenance stores p atomically.
func (r *Run) WriteProvenance(p *Provenance) error {
	return fsutil.WriteJSON(filepath.Join(r.Dir, ProvenanceFile), p)
}

// ReadProvenance loads provenance.json.
func (r *Run) ReadProvenance() (*Provenance, error) {
	var p Provenance
	if err := readJSON(filepath.Join(r.Dir, ProvenanceFile), &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// GitState returns HEAD and whether the work tree has changes (both empty
// when repo is not a git checkout).
func GitState(ctx context.Context, repo string) (commit string, dirty bool) {
	out, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "HEAD").Output()
	if err != nil {
		return "", false
	}
	commit = strings.TrimSpace(string(out))
	st, err := exec.CommandContext(ctx, "git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output()
	return commit, err != nil || len(strings.TrimSpace(string(st))) > 0
}

// HashFiles returns sha256 of every file under root/dir whose name ends in
// ext, keyed by its path relative to root.
func HashFiles(root, dir, ext string) (map[string]string, error) {
	out := map[string]string{}
	base := filepath.Join(root, dir)
	if _, err := os.Stat(base); err != nil {
		return out, nil
	}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ext) {
			return err
		}
		sum, err := HashFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = sum
		return nil
	})
	return out, err
}

// HashFile is the hex sha256 of a file.
func HashFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return HashBytes(b), nil
}

// HashBytes is the hex sha256 of b.
func HashBytes(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// QemuVersion is the first line of `<binary> --version`.
func QemuVersion(ctx context.Context, binary string) string {
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return "unknown (" + binary + ": " + err.Error() + ")"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// HostCPU is the model name from /proc/cpuinfo.
func HostCPU() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// HostKernel is the host's kernel release.
func HostKernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// HostLoad1 is the host's 1-minute load average (0 if unknown).
func HostLoad1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	fmt.Sscan(string(b), &l)
	return l
}

// AddAccel records an accelerator once, keeping the list sorted.
func (p *Provenance) AddAccel(a string) {
	if a == "" {
		return
	}
	for _, x := range p.Accelerators {
		if x == a {
			return
		}
	}
	p.Accelerators = append(p.Accelerators, a)
	sort.Strings(p.Accelerators)
}

// BaseProvenance fills the host-side fields.
func BaseProvenance(ctx context.Context, repo, qemuBinary string) (*Provenance, error) {
	commit, dirty := GitState(ctx, repo)
	objs, err := HashFiles(repo, "bpf", ".o")
	if err != nil {
		return nil, err
	}
	return &Provenance{
		Started:    time.Now().UTC(),
		GitCommit:  commit,
		GitDirty:   dirty,
		BPFObjects: objs,
		Qemu:       QemuVersion(ctx, qemuBinary),
		HostCPU:    HostCPU(),
		HostCPUs:   runtime.NumCPU(),
		HostKernel: HostKernel(),
		GoVersion:  runtime.Version(),
		TrialSeeds: map[string]uint64{},
	}, nil
}
