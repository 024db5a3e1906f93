// Package kernel pins the guest kernels the harness boots, fetches them from
// Debian's archive through a private apt configuration, and keeps verified,
// unpacked copies in a cache keyed by the pin.
package kernel

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/agentcgroup/agentcgroup/harness/apt"
)

// Pins is the parsed vmimages/kernels.toml.
type Pins struct {
	Suites  map[string]Suite `toml:"suites"`
	Kernels map[string]Pin   `toml:"kernels"`
	// UserlandSuite names the suite Debian packages added to the guest
	// image come from: the release the kernels belong to.
	UserlandSuite string `toml:"userland_suite"`
	path          string
}

// Suite is one Debian archive suite the private apt configuration reads.
type Suite = apt.Suite

// Pin names one guest kernel. A stock kernel is a set of binary packages; a
// built kernel (Source set) is compiled from a source package plus patches.
type Pin struct {
	Name     string    `toml:"-"`
	Suite    string    `toml:"suite"`
	Release  string    `toml:"release"`
	Modules  []string  `toml:"modules"`
	Packages []Package `toml:"packages"`
	Source   *Package  `toml:"source"`
	Patches  string    `toml:"patches"` // directory of *.patch, applied in name order
	Config   string    `toml:"config"`  // kconfig fragment
}

// Package is one exact Debian package version and its expected sha256.
type Package struct {
	Name    string `toml:"name"`
	Version string `toml:"version"`
	SHA256  string `toml:"sha256"`
}

// entryLayout versions the cache entry layout (2: PVH kernel added).
const entryLayout = 2

// Built reports whether the kernel is compiled by us rather than unpacked.
func (p Pin) Built() bool { return p.Source != nil }

var sha256Re = regexp.MustCompile(`^[0-9a-f]{64}$`)

// LoadPins reads and validates a kernels.toml file.
func LoadPins(path string) (*Pins, error) {
	var p Pins
	md, err := toml.DecodeFile(path, &p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p.path = path
	var problems []string
	for _, k := range md.Undecoded() {
		problems = append(problems, fmt.Sprintf("unknown key %q", k.String()))
	}
	for name, k := range p.Kernels {
		k.Name = name
		p.Kernels[name] = k
		problems = append(problems, k.validate(p.Suites)...)
	}
	if len(p.Kernels) == 0 {
		problems = append(problems, "no [kernels.<name>] entries")
	}
	if _, ok := p.Suites[p.UserlandSuite]; p.UserlandSuite != "" && !ok {
		problems = append(problems, fmt.Sprintf("userland_suite %q is not defined under [suites]", p.UserlandSuite))
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("%s: %s", path, strings.Join(problems, "; "))
	}
	return &p, nil
}

func (k Pin) validate(suites map[string]Suite) []string {
	var out []string
	bad := func(f string, a ...any) { out = append(out, fmt.Sprintf("kernels.%s: ", k.Name)+fmt.Sprintf(f, a...)) }
	if _, ok := suites[k.Suite]; !ok {
		bad("suite %q is not defined under [suites]", k.Suite)
	}
	if k.Release == "" {
		bad("release is empty")
	}
	pkgs := k.Packages
	if k.Source != nil {
		pkgs = append([]Package{*k.Source}, pkgs...)
		if k.Config == "" {
			bad("a built kernel needs config (a kconfig fragment)")
		}
	} else if len(k.Packages) == 0 {
		bad("needs packages (a stock kernel) or source (a built kernel)")
	}
	for _, p := range pkgs {
		if p.Name == "" || p.Version == "" {
			bad("package %q: name and version are required", p.Name)
		}
		if !sha256Re.MatchString(p.SHA256) {
			bad("package %q: sha256 must be 64 lower-case hex digits", p.Name)
		}
	}
	return out
}

// Get returns the named pin or an error listing the known names.
func (p *Pins) Get(name string) (Pin, error) {
	k, ok := p.Kernels[name]
	if !ok {
		names := make([]string, 0, len(p.Kernels))
		for n := range p.Kernels {
			names = append(names, n)
		}
		sort.Strings(names)
		return Pin{}, fmt.Errorf("no kernel %q in %s (known: %s)", name, p.path, strings.Join(names, ", "))
	}
	return k, nil
}

// Userland returns the suite guest packages come from, and its name.
func (p *Pins) Userland() (string, Suite, error) {
	if p.UserlandSuite == "" {
		return "", Suite{}, fmt.Errorf("%s sets no userland_suite: Debian packages for the guest need a suite to come from (the release of the stock kernel, e.g. \"trixie\" under [suites])", p.path)
	}
	return p.UserlandSuite, p.Suites[p.UserlandSuite], nil
}

// Key identifies the pin's content: any change to what would be fetched or
// loaded gives a new cache entry.
func (k Pin) Key() string {
	b, err := json.Marshal(struct {
		Layout        int // bump when the entry's layout changes
		Name, Release string
		Modules       []string
		Packages      []Package
		Source        *Package
	}{entryLayout, k.Name, k.Release, k.Modules, k.Packages, k.Source})
	if err != nil {
		panic(err) // plain structs always marshal
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
