// Package kernelbuild compiles the patched guest kernel: Debian's
// linux-source package, our patch series and a config fragment. Results are
// cached by a hash of every input that can change the image; the source tree
// and object directory are kept so a patch edit rebuilds only what changed.
package kernelbuild

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// recipeVersion changes when the build steps change in a way that alters
// the image (config recipe, make targets), so old entries are not reused.
const recipeVersion = 1

// Inputs is everything a build depends on.
type Inputs struct {
	// SourceDeb is a verified linux-source-*.deb (the fetcher checks it
	// against the pin before handing it over).
	SourceDeb string
	// SourceSHA256 is the deb's pinned sha256; empty means hash SourceDeb.
	SourceSHA256 string
	// Patches are applied with patch -p1 in the order given.
	Patches []string
	// ConfigFragment is merged over allnoconfig + kvm_guest.config.
	ConfigFragment string
	// CacheDir is the harness cache root ($AGENTCGROUP_CACHE).
	CacheDir string
	// Jobs is make's -j; 0 means the number of CPUs plus one.
	Jobs int
}

// Output is a finished build.
type Output struct {
	BzImage string
	Vmlinux string // debug info stripped, BTF kept
	Key     string
}

// patchID names one patch by its file name and content hash; the content
// is what matters, the name keeps the order readable in the marker.
type patchID struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

// keyInputs is the hashed description of a build. Field order is fixed by
// the struct, so the JSON (and the key) is deterministic.
type keyInputs struct {
	Recipe    int       `json:"recipe"`
	Source    string    `json:"source_sha256"`
	Patches   []patchID `json:"patches"`
	Fragment  string    `json:"fragment_sha256"`
	Toolchain []string  `json:"toolchain"`
}

// deriveKey hashes the build description. The toolchain identity is passed
// in so tests need no compiler.
func deriveKey(sourceSHA string, patches []patchID, fragmentSHA string, toolchain []string) string {
	b, err := json.Marshal(keyInputs{recipeVersion, sourceSHA, patches, fragmentSHA, toolchain})
	if err != nil {
		panic(err) // plain structs always marshal
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// hashPatches reads every patch and returns its identity, in order.
func hashPatches(paths []string) ([]patchID, error) {
	out := make([]patchID, 0, len(paths))
	for _, p := range paths {
		sum, err := fsutil.FileSHA256(p)
		if err != nil {
			return nil, fmt.Errorf("patch %s: %w", p, err)
		}
		out = append(out, patchID{Name: filepath.Base(p), SHA256: sum})
	}
	return out, nil
}

// PatchSeries lists the *.patch files of a directory in name order, the
// order they are applied in. Other files (the cover letter) are ignored.
func PatchSeries(dir string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(dir, "*.patch"))
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("patch directory %s: %w", dir, err)
		}
	}
	return m, nil // Glob sorts
}
