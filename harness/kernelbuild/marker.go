package kernelbuild

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// markerName is written last into an output entry; an entry without a
// marker that matches its key is incomplete and gets rebuilt.
const markerName = "complete.json"

type marker struct {
	Key           string    `json:"key"`
	Inputs        keyInputs `json:"inputs"`
	BzImageSHA256 string    `json:"bzimage_sha256"`
	VmlinuxSize   int64     `json:"vmlinux_size"`
	BuildSeconds  float64   `json:"build_seconds"`
	Finished      time.Time `json:"finished"`
}

// readEntry returns the output in dir when its marker is present, names
// the expected key and the files still match it.
func readEntry(dir, key string) (Output, error) {
	b, err := os.ReadFile(filepath.Join(dir, markerName))
	if err != nil {
		return Output{}, err
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil {
		return Output{}, fmt.Errorf("%s: bad marker: %w", dir, err)
	}
	if m.Key != key {
		return Output{}, fmt.Errorf("%s: marker key %.12s does not match %.12s", dir, m.Key, key)
	}
	out := Output{BzImage: filepath.Join(dir, "bzImage"), Vmlinux: filepath.Join(dir, "vmlinux"), Key: key}
	sum, err := fsutil.FileSHA256(out.BzImage)
	if err != nil {
		return Output{}, fmt.Errorf("%s: %w", dir, err)
	}
	if sum != m.BzImageSHA256 {
		return Output{}, fmt.Errorf("%s: bzImage sha256 %.12s does not match its marker", dir, sum)
	}
	st, err := os.Stat(out.Vmlinux)
	if err != nil {
		return Output{}, fmt.Errorf("%s: %w", dir, err)
	}
	if st.Size() != m.VmlinuxSize {
		return Output{}, fmt.Errorf("%s: vmlinux size %d does not match its marker (%d)", dir, st.Size(), m.VmlinuxSize)
	}
	return out, nil
}

// writeEntry fills tmp with the images and the marker (last), then renames
// tmp to dir, so dir either does not exist or is complete.
func writeEntry(tmp, dir string, m marker, bzImage, vmlinux string, strip func(src, dst string) error) error {
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if err := fsutil.CopyFile(bzImage, filepath.Join(tmp, "bzImage")); err != nil {
		return err
	}
	if err := strip(vmlinux, filepath.Join(tmp, "vmlinux")); err != nil {
		return err
	}
	sum, err := fsutil.FileSHA256(filepath.Join(tmp, "bzImage"))
	if err != nil {
		return err
	}
	st, err := os.Stat(filepath.Join(tmp, "vmlinux"))
	if err != nil {
		return err
	}
	m.BzImageSHA256 = sum
	m.VmlinuxSize = st.Size()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFile(filepath.Join(tmp, markerName), append(b, '\n')); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// isMissing reports whether err means "no entry yet" rather than "broken".
func isMissing(err error) bool { return errors.Is(err, os.ErrNotExist) }
