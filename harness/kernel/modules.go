package kernel

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ulikunitz/xz"
)

// extractModules resolves the wanted modules and their dependencies from a
// Debian modules tree (no modules.dep: depmod runs at install time, which
// never happens here) and writes them uncompressed into outDir, so the guest
// can load them with a plain finit_module. It returns file names in load
// order, dependencies first.
func extractModules(modDir string, wanted []string, outDir string) ([]string, error) {
	if len(wanted) == 0 {
		return nil, nil
	}
	index := map[string]string{}
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name, ok := moduleName(d.Name()); ok && !d.IsDir() {
			index[name] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading modules: %w", err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		name = normModName(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, name), " -> "))
		case 2:
			return nil
		}
		path, ok := index[name]
		if !ok {
			return fmt.Errorf("module %s (needed by %s) is not in %s: it may be built in, or the name is wrong", name, strings.Join(chain, " -> "), modDir)
		}
		state[name] = 1
		data, err := readModule(path)
		if err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
		deps, err := moduleDepends(data)
		if err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		file := name + ".ko"
		if err := os.WriteFile(filepath.Join(outDir, file), data, 0o644); err != nil {
			return err
		}
		order = append(order, file)
		state[name] = 2
		return nil
	}
	for _, w := range wanted {
		if err := visit(w, []string{"kernels.toml"}); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func moduleName(file string) (string, bool) {
	for _, ext := range []string{".ko.xz", ".ko"} {
		if strings.HasSuffix(file, ext) {
			return normModName(strings.TrimSuffix(file, ext)), true
		}
	}
	return "", false
}

// normModName folds '-' to '_' as the kernel does when matching module names.
func normModName(s string) string { return strings.ReplaceAll(s, "-", "_") }

func readModule(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if !strings.HasSuffix(path, ".xz") {
		return io.ReadAll(f)
	}
	r, err := xz.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("xz: %w", err)
	}
	return io.ReadAll(r)
}

// moduleDepends reads the depends= entry of a module's .modinfo section.
func moduleDepends(ko []byte) ([]string, error) {
	ef, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, fmt.Errorf("not an ELF module: %w", err)
	}
	sec := ef.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	info, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}
