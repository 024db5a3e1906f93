package results

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCommitReplacesAndResumes(t *testing.T) {
	now := time.Date(2026, 11, 27, 1, 2, 3, 0, time.UTC)
	run, err := Create(t.TempDir(), "smoke", now)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(run.Dir) != "20261127T010203Z-smoke" {
		t.Errorf("dir name %s", filepath.Base(run.Dir))
	}
	if _, err := Create(filepath.Dir(run.Dir), "smoke", now); err == nil {
		t.Error("second run with the same name was created")
	}
	st, err := run.Staging("a")
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Commit(st, Outcome{ID: "a", Status: StatusFailed, Reason: "x"}); err != nil {
		t.Fatal(err)
	}
	if run.Done("a") {
		t.Error("a failed trial counts as done")
	}
	st, _ = run.Staging("a")
	os.WriteFile(filepath.Join(st, "data"), []byte("new"), 0o644)
	if err := run.Commit(st, Outcome{ID: "a", Status: StatusOK}); err != nil {
		t.Fatal(err)
	}
	if !run.Done("a") {
		t.Error("committed ok trial not done")
	}
	if b, _ := os.ReadFile(filepath.Join(run.TrialDir("a"), "data")); string(b) != "new" {
		t.Error("old attempt's directory survived")
	}
	stray, _ := run.Staging("b") // an interrupted attempt
	if err := run.CleanStaging(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Error("staging directory not cleaned")
	}
	ids, _ := run.TrialIDs()
	if len(ids) != 1 || ids[0] != "a" {
		t.Errorf("trial ids %v", ids)
	}
	if _, err := Open(run.Dir); err == nil {
		t.Error("a directory without scenario.toml and plan.json opened as a run")
	}
}
