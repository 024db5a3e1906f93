package kernelbuild

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/agentcgroup/agentcgroup/harness/kernel"
)

// PinInputs turns a built kernel pin (kernels.toml entry with source,
// patches and config) into build inputs; the pin's paths are relative to
// the repository root.
func PinInputs(repoRoot string, pin kernel.Pin, sourceDeb, cacheDir string) (Inputs, error) {
	if pin.Source == nil {
		return Inputs{}, fmt.Errorf("kernel %s is not built from source (no source package in its pin)", pin.Name)
	}
	in := Inputs{
		SourceDeb:      sourceDeb,
		SourceSHA256:   pin.Source.SHA256,
		ConfigFragment: filepath.Join(repoRoot, pin.Config),
		CacheDir:       cacheDir,
	}
	if pin.Patches != "" {
		p, err := PatchSeries(filepath.Join(repoRoot, pin.Patches))
		if err != nil {
			return Inputs{}, err
		}
		in.Patches = p
	}
	return in, nil
}

// Builder adapts Build to the kernel fetcher's Builder hook.
func Builder(repoRoot string) kernel.Builder {
	return func(ctx context.Context, pin kernel.Pin, sourceDeb, cacheDir string, progress io.Writer) (string, string, error) {
		in, err := PinInputs(repoRoot, pin, sourceDeb, cacheDir)
		if err != nil {
			return "", "", err
		}
		out, err := Build(ctx, in, progress)
		if err != nil {
			return "", "", err
		}
		return out.BzImage, out.Vmlinux, nil
	}
}

// PinKey is the build key of a pin's current inputs (patch and fragment
// contents included). A cache keyed only by the pin's metadata must fold
// this in, or a patch edit would keep serving the old image.
func PinKey(ctx context.Context, repoRoot string, pin kernel.Pin, cacheDir string) (string, error) {
	in, err := PinInputs(repoRoot, pin, "unused-when-sha256-is-pinned", cacheDir)
	if err != nil {
		return "", err
	}
	if in.SourceSHA256 == "" {
		return "", errors.New("pin has no source sha256")
	}
	return Key(ctx, in)
}
