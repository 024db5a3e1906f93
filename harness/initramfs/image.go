package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/agentcgroup/agentcgroup/harness/guest"
)

// recipeVersion changes whenever the image layout below changes, so cached
// images built by older code are not reused.
const recipeVersion = "agentcgroup-initramfs-1"

// Recipe describes the base guest image: everything but the per-boot job.
type Recipe struct {
	RepoRoot string   // module root; every cmd/* except host-only ones is built
	Busybox  string   // a static busybox; default /bin/busybox
	Modules  []string // uncompressed kernel modules in load order
	CacheDir string
	Log      io.Writer
}

// hostOnly are commands that never run in the guest.
var hostOnly = map[string]bool{"agentbench": true}

// Build returns the path of the cached base image for r, building it when
// any input (binaries, busybox, modules, recipe) changed.
func Build(ctx context.Context, r Recipe) (string, error) {
	if r.Busybox == "" {
		r.Busybox = "/bin/busybox"
	}
	if err := checkStatic(r.Busybox); err != nil {
		return "", fmt.Errorf("%w: install busybox-static (make setup)", err)
	}
	binDir, err := os.MkdirTemp("", "agentcgroup-bin-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(binDir)
	bins, err := buildCommands(ctx, r.RepoRoot, binDir)
	if err != nil {
		return "", err
	}
	applets, err := busyboxApplets(ctx, r.Busybox)
	if err != nil {
		return "", err
	}

	a := NewArchive()
	add := func(e Entry, err error) error {
		if err != nil {
			return err
		}
		return a.Add(e)
	}
	for _, d := range []string{"/proc", "/sys", "/dev", "/run", "/tmp", "/root", "/out", "/etc", "/var/tmp"} {
		if err := a.Add(Dir(d, 0o755)); err != nil {
			return "", err
		}
	}
	a.Add(Dir("/tmp", 0o1777))
	a.Add(CharDev("/dev/console", 0o600, 5, 1))
	a.Add(CharDev("/dev/null", 0o666, 1, 3))
	a.Add(File("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")))
	a.Add(File("/etc/group", 0o644, []byte("root:x:0:\n")))
	if err := add(fileEntry("/bin/busybox", r.Busybox)); err != nil {
		return "", err
	}
	for _, ap := range applets {
		if !a.Has(ap) {
			a.Add(Symlink(ap, "/bin/busybox"))
		}
	}
	if err := add(fileEntry("/init", filepath.Join(binDir, "agentinit"))); err != nil {
		return "", err
	}
	for _, b := range bins {
		if b == "agentinit" {
			continue
		}
		if err := add(fileEntry(filepath.Join(guest.BinDir, b), filepath.Join(binDir, b))); err != nil {
			return "", err
		}
	}
	var order []string
	for _, m := range r.Modules {
		name := filepath.Base(m)
		if err := add(fileEntry(filepath.Join(guest.ModuleDir, name), m)); err != nil {
			return "", err
		}
		order = append(order, name)
	}
	a.Add(File(guest.ModuleList, 0o644, []byte(strings.Join(order, "\n")+"\n")))

	// The archive is canonical, so its hash is the cache key.
	h := sha256.New()
	io.WriteString(h, recipeVersion)
	if _, err := a.WriteTo(h); err != nil {
		return "", err
	}
	key := hex.EncodeToString(h.Sum(nil))
	dir := filepath.Join(r.CacheDir, "initramfs")
	final := filepath.Join(dir, key[:16]+".cpio")
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "build-*.cpio")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := a.WriteTo(tmp); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if r.Log != nil {
		fmt.Fprintf(r.Log, "initramfs: built %s (%d binaries, %d modules)\n", filepath.Base(final), len(bins), len(order))
	}
	return final, os.Rename(tmp.Name(), final)
}

// fileEntry archives a host file, read when the archive is written.
func fileEntry(guestPath, hostPath string) (Entry, error) {
	st, err := os.Stat(hostPath)
	if err != nil {
		return Entry{}, err
	}
	return Reader(guestPath, uint32(st.Mode().Perm()), st.Size(), func() (io.ReadCloser, error) {
		return os.Open(hostPath)
	}), nil
}

// buildCommands builds every guest command as a static binary into dir.
func buildCommands(ctx context.Context, root, dir string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(root, "cmd"))
	if err != nil {
		return nil, fmt.Errorf("finding commands: %w", err)
	}
	// AGENTBENCH_GUEST_CMDS narrows the set while developing one command in
	// a tree where another does not build yet; agentinit is always needed.
	only := map[string]bool{}
	if v := os.Getenv("AGENTBENCH_GUEST_CMDS"); v != "" {
		for _, n := range strings.Split(v, ",") {
			only[strings.TrimSpace(n)] = true
		}
		only["agentinit"] = true
	}
	var pkgs, names []string
	for _, e := range ents {
		if !e.IsDir() || hostOnly[e.Name()] || strings.HasPrefix(e.Name(), "_") || strings.HasPrefix(e.Name(), ".") ||
			len(only) > 0 && !only[e.Name()] {
			continue
		}
		if m, _ := filepath.Glob(filepath.Join(root, "cmd", e.Name(), "*.go")); len(m) == 0 {
			continue
		}
		pkgs = append(pkgs, "./cmd/"+e.Name())
		names = append(names, e.Name())
	}
	sort.Strings(names)
	args := append([]string{"build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", dir + "/"}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building guest binaries (set AGENTBENCH_GUEST_CMDS=name,... to build only some): %v\n%s", err, out)
	}
	return names, nil
}

// busyboxApplets lists the absolute paths busybox installs its applets at.
func busyboxApplets(ctx context.Context, bb string) ([]string, error) {
	out, err := exec.CommandContext(ctx, bb, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", bb, err)
	}
	var aps []string
	for _, l := range strings.Fields(string(out)) {
		aps = append(aps, "/"+strings.TrimPrefix(l, "/"))
	}
	return aps, nil
}

// checkStatic fails for a dynamically linked binary: the guest has no libc.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; the guest has no C library", path)
		}
	}
	return nil
}

// CheckStatic is checkStatic for callers that put their own binaries in a
// guest (tests shipping themselves).
func CheckStatic(path string) error { return checkStatic(path) }

// JobArchive is the small per-boot archive appended after the base image:
// the job and any extra files. Linux unpacks concatenated archives in order.
func JobArchive(files map[string][]byte, hostFiles map[string]string) ([]byte, error) {
	a := NewArchive()
	for p, data := range files {
		if err := a.Add(File(p, 0o644, data)); err != nil {
			return nil, err
		}
	}
	for p, hp := range hostFiles {
		e, err := fileEntry(p, hp)
		if err != nil {
			return nil, err
		}
		if err := a.Add(e); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
