package kernelbuild

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// aptInstall is the one command that brings a Debian host every tool the
// build needs.
const aptInstall = "sudo apt-get install -y make gcc binutils bc bison flex libelf-dev libssl-dev pahole ccache patch xz-utils python3"

// tools maps each required program to the Debian package providing it.
var tools = []struct{ bin, pkg string }{
	{"make", "make"}, {"gcc", "gcc"}, {"ld", "binutils"}, {"objcopy", "binutils"},
	{"bc", "bc"}, {"bison", "bison"}, {"flex", "flex"}, {"pahole", "pahole"},
	{"ccache", "ccache"}, {"patch", "patch"}, {"tar", "tar"}, {"xz", "xz-utils"},
	{"dpkg-deb", "dpkg"},
	// The BTF build generates libbpf's helper definitions with a Python
	// script (scripts/bpf_doc.py).
	{"python3", "python3"},
}

// headers are needed by host programs the kernel build compiles (objtool,
// certificate tools).
var headers = []struct{ path, pkg string }{
	{"/usr/include/libelf.h", "libelf-dev"},
	{"/usr/include/openssl/opensslv.h", "libssl-dev"},
}

// checkDeps names every missing tool or header at once, with the command
// that installs them.
func checkDeps(ctx context.Context) error {
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t.bin); err != nil {
			missing = append(missing, fmt.Sprintf("%s (package %s)", t.bin, t.pkg))
		}
	}
	for _, h := range headers {
		if _, err := os.Stat(h.path); err != nil {
			missing = append(missing, fmt.Sprintf("%s (package %s)", h.path, h.pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing kernel build dependencies: %s; install them with: %s", strings.Join(missing, ", "), aptInstall)
	}
	v, err := paholeVersion(ctx)
	if err != nil {
		return err
	}
	if v < 122 {
		return fmt.Errorf("pahole %d.%d is too old: CONFIG_DEBUG_INFO_BTF needs pahole >= 1.22; install a newer one with: %s", v/100, v%100, aptInstall)
	}
	return nil
}

var paholeRe = regexp.MustCompile(`v?(\d+)\.(\d+)`)

func paholeVersion(ctx context.Context) (int, error) {
	out, err := exec.CommandContext(ctx, "pahole", "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("pahole --version: %w", err)
	}
	m := paholeRe.FindStringSubmatch(string(out))
	if m == nil {
		return 0, fmt.Errorf("cannot read pahole version from %q", strings.TrimSpace(string(out)))
	}
	maj, _ := strconv.Atoi(m[1])
	min, _ := strconv.Atoi(m[2])
	return maj*100 + min, nil
}

// toolchainIdentity is the first line of each tool's version output: a
// compiler or pahole upgrade changes the image, so it changes the key.
func toolchainIdentity(ctx context.Context) ([]string, error) {
	var ids []string
	for _, c := range [][]string{{"gcc", "--version"}, {"ld", "--version"}, {"pahole", "--version"}, {"make", "--version"}} {
		out, err := exec.CommandContext(ctx, c[0], c[1:]...).Output()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", strings.Join(c, " "), err)
		}
		line, _, _ := bytes.Cut(out, []byte("\n"))
		ids = append(ids, strings.TrimSpace(string(line)))
	}
	return ids, nil
}

// freeBytes is the space available to us on the file system holding dir.
func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Disk needed: a cold build holds the source, the object directory and
// the compiler cache (measured about 3.7 GB); an incremental one adds
// little beyond the output entry.
const (
	coldBuildBytes = 5 << 30
	warmBuildBytes = 1 << 30
)

func checkDisk(dir string, need uint64) error {
	free, err := freeBytes(dir)
	if err != nil {
		return err
	}
	if free < need {
		return fmt.Errorf("disk full: %s has %.1f GB free, a kernel build needs about %.1f GB; free space or point AGENTCGROUP_CACHE at a larger disk",
			dir, float64(free)/(1<<30), float64(need)/(1<<30))
	}
	return nil
}
