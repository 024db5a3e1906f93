package kernel

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/agentcgroup/agentcgroup/harness/apt"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// Change is one package pin moving to a newer version.
type Change struct{ Old, New Package }

// Bump finds, for each package of the named pin, the newest version of the
// same package in its suite. Moving to a new kernel release (new package
// names) is a manual edit of kernels.toml, since module names and configs
// may change with it.
func Bump(ctx context.Context, pins *Pins, name, cacheDir string) ([]Change, error) {
	pin, err := pins.Get(name)
	if err != nil {
		return nil, err
	}
	a, err := apt.New(cacheDir, pin.Suite, pins.Suites[pin.Suite], "guest kernels")
	if err != nil {
		return nil, err
	}
	if err := a.Update(ctx); err != nil {
		return nil, err
	}
	pkgs := pin.Packages
	if pin.Source != nil {
		pkgs = append([]Package{*pin.Source}, pkgs...)
	}
	var out []Change
	for _, p := range pkgs {
		ap, err := a.Candidate(ctx, p.Name)
		if err != nil {
			return nil, fmt.Errorf("%w (the release may have left the suite: pin a new release by hand)", err)
		}
		c := Package{Name: ap.Name, Version: ap.Version, SHA256: ap.SHA256}
		if c.Version != p.Version || c.SHA256 != p.SHA256 {
			out = append(out, Change{Old: p, New: c})
		}
	}
	return out, nil
}

// RewritePins replaces version and sha256 values in place, keeping the
// file's comments and layout.
func RewritePins(path string, changes []Change) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	for _, c := range changes {
		s = strings.ReplaceAll(s, fmt.Sprintf("%q", c.Old.SHA256), fmt.Sprintf("%q", c.New.SHA256))
		s = strings.ReplaceAll(s, fmt.Sprintf("version = %q", c.Old.Version), fmt.Sprintf("version = %q", c.New.Version))
	}
	return fsutil.WriteFile(path, []byte(s))
}
