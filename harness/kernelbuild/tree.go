package kernelbuild

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// The build root keeps one source tree and one object directory, reused
// across builds so a patch edit recompiles only what it touches:
//
//	<root>/state.json  which source is unpacked, which patches are applied
//	<root>/src/<dir>   the source tree (patched in place)
//	<root>/obj         make O= directory
//	<root>/applied/    copies of the applied patches, for reversing them
//	<root>/ccache      compiler cache
//	<root>/out/<key>/  finished images with complete.json
type treeState struct {
	SourceSHA256 string    `json:"source_sha256"`
	SrcDir       string    `json:"src_dir"` // under src/
	Applied      []patchID `json:"applied"`
}

func readState(root string) (treeState, error) {
	var s treeState
	b, err := os.ReadFile(filepath.Join(root, "state.json"))
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("state.json: %w", err)
	}
	return s, nil
}

func writeState(root string, s treeState) error {
	return fsutil.WriteJSON(filepath.Join(root, "state.json"), s)
}

// commonPrefix is how many leading patches of the applied series can stay.
func commonPrefix(applied, want []patchID) int {
	n := 0
	for n < len(applied) && n < len(want) && applied[n] == want[n] {
		n++
	}
	return n
}

// ensureSource unpacks the source deb unless the tree for this sha256 is
// already there. A different source wipes the tree and the object dir.
func (b *builder) ensureSource(ctx context.Context, sourceSHA string) (treeState, error) {
	s, err := readState(b.root)
	if err == nil && s.SourceSHA256 == sourceSHA {
		if _, err := os.Stat(filepath.Join(b.root, "src", s.SrcDir, "Makefile")); err == nil {
			return s, nil
		}
	}
	b.logf("unpacking %s (about 1.5 GB)", filepath.Base(b.in.SourceDeb))
	for _, d := range []string{"src", "obj", "applied", "src.tmp"} {
		if err := os.RemoveAll(filepath.Join(b.root, d)); err != nil {
			return s, err
		}
	}
	os.Remove(filepath.Join(b.root, "state.json"))
	tmp := filepath.Join(b.root, "src.tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return s, err
	}
	// linux-source-X.Y ships usr/src/linux-source-X.Y.tar.xz inside the deb.
	script := `dpkg-deb --fsys-tarfile "$1" | tar -x --wildcards './usr/src/linux-source-*.tar.*' && tar -xf usr/src/linux-source-*.tar.* && rm -rf usr`
	if err := b.run(ctx, tmp, "sh", "-c", script, "sh", b.in.SourceDeb); err != nil {
		return s, fmt.Errorf("unpacking %s: %w", b.in.SourceDeb, err)
	}
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return s, err
	}
	if len(ents) != 1 || !ents[0].IsDir() {
		return s, fmt.Errorf("%s: expected one linux-source directory in its tarball, found %d entries", b.in.SourceDeb, len(ents))
	}
	if err := os.Rename(tmp, filepath.Join(b.root, "src")); err != nil {
		return s, err
	}
	s = treeState{SourceSHA256: sourceSHA, SrcDir: ents[0].Name()}
	return s, writeState(b.root, s)
}

// syncPatches makes the tree carry exactly want (in order): it reverses
// applied patches down to the common prefix and applies the rest, saving
// the state after every step so an interruption is recoverable.
func (b *builder) syncPatches(ctx context.Context, s treeState, want []patchID, paths []string) (treeState, error) {
	src := filepath.Join(b.root, "src", s.SrcDir)
	applied := filepath.Join(b.root, "applied")
	if err := os.MkdirAll(applied, 0o755); err != nil {
		return s, err
	}
	keep := commonPrefix(s.Applied, want)
	for i := len(s.Applied) - 1; i >= keep; i-- {
		p := s.Applied[i]
		saved := filepath.Join(applied, fmt.Sprintf("%03d-%s", i, p.Name))
		b.logf("reverting %s", p.Name)
		if err := b.run(ctx, src, "patch", "-p1", "-R", "--batch", "--silent", "-i", saved); err != nil {
			return s, b.resetTree(fmt.Errorf("reverting %s failed (%v)", p.Name, err))
		}
		os.Remove(saved)
		s.Applied = s.Applied[:i]
		if err := writeState(b.root, s); err != nil {
			return s, err
		}
	}
	for i := keep; i < len(want); i++ {
		b.logf("applying %s", want[i].Name)
		if out, err := b.output(ctx, src, "patch", "-p1", "--dry-run", "--batch", "--forward", "-i", paths[i]); err != nil {
			return s, fmt.Errorf("patch %s does not apply to %s (source sha256 %.12s): %s; rebase the patch on that source",
				paths[i], s.SrcDir, s.SourceSHA256, strings.TrimSpace(out))
		}
		saved := filepath.Join(applied, fmt.Sprintf("%03d-%s", i, want[i].Name))
		if err := fsutil.CopyFile(paths[i], saved); err != nil {
			return s, err
		}
		if err := b.run(ctx, src, "patch", "-p1", "--batch", "--forward", "--silent", "-i", saved); err != nil {
			return s, b.resetTree(fmt.Errorf("applying %s failed after a clean dry run (%v)", want[i].Name, err))
		}
		s.Applied = append(s.Applied, want[i])
		if err := writeState(b.root, s); err != nil {
			return s, err
		}
	}
	return s, nil
}

// resetTree drops the tree so the next build starts from a clean unpack;
// used when the tree no longer matches its recorded state.
func (b *builder) resetTree(cause error) error {
	os.Remove(filepath.Join(b.root, "state.json"))
	return &resetError{cause}
}
