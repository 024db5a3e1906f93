package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad scenarios are rejected before any guest boots: these run on a host
// without qemu just as well, because validation comes first.
func TestEvalRejectsBadInputBeforeBooting(t *testing.T) {
	base := `name = "bad"
seed = 1
configurations = ["baseline"]
[guest]
mem = "512M"
[timing]
duration = "2s"
[[victims]]
name = "chat"
kind = "interactive"
period = "20ms"
`
	cases := []struct {
		name, text, want string
	}{
		{"malformed", strings.Replace(base, `duration = "2s"`, `duration = 2s`, 1), "bad.toml:7: TOML syntax"},
		{"unknown neighbour", base + "[[neighbours]]\nname = \"n\"\nkind = \"gpu_burner\"\n", `bad.toml:14: neighbours[0].kind: unknown kind "gpu_burner"`},
		// A budget beyond the guest is only a warning (overcommit is
		// allowed); high above max is still refused.
		{"high above max", strings.Replace(base, "[[victims]]", "[budgets.victim]\nmemory_high = \"300M\"\nmemory_max = \"200M\"\n[[victims]]", 1), "bad.toml:9: budgets.victim.memory_high: 300M is above memory_max 200M"},
		{"missing kernel", strings.Replace(base, "seed = 1", "seed = 1\nkernel = \"v9.9\"", 1), `bad.toml:3: kernel: "v9.9" is not a kernel in vmimages/kernels.toml`},
		{"bad value", strings.Replace(base, `period = "20ms"`, `period = "soon"`, 1), `bad.toml:11: victims[0].period: bad duration "soon"`},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, "bad.toml")
			if err := os.WriteFile(path, []byte(c.text), 0o644); err != nil {
				t.Fatal(err)
			}
			err := runEval(context.Background(), []string{"--results", filepath.Join(dir, "results"), path})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, c.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "results")); err == nil {
				t.Error("a results directory was created for an invalid scenario")
			}
		})
	}
}

func TestEvalDryRunShippedScenarios(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "scenarios", "*.toml"))
	for _, f := range files {
		if err := runEval(context.Background(), []string{"--dry-run", f}); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
