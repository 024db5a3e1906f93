package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/agentcgroup/agentcgroup/daemon/config"
)

func TestBuiltinPolicyOnlyWithoutFileOrFlag(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "policy.toml")
	if c := builtinPolicy(missing, false); c == nil || !c.Daemon.MonitorOnly || c.Path != config.BuiltinName {
		t.Fatalf("no flag, no file: want the built-in monitor-only policy, got %+v", c)
	}
	if c := builtinPolicy(missing, true); c != nil {
		t.Fatal("an explicit --config naming a missing file must not fall back to the built-in policy")
	}
	present := filepath.Join(dir, "present.toml")
	if err := os.WriteFile(present, []byte("not toml ["), 0o644); err != nil {
		t.Fatal(err)
	}
	if c := builtinPolicy(present, false); c != nil {
		t.Fatal("a file at the default path must be loaded (and its errors reported), not replaced")
	}
}
