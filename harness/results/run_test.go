package results

import (
	"encoding/json"
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

// A resumption records its commit, which then runs the trials; the bare
// timestamps earlier runs wrote for a resumption still load.
func TestResumptionCommit(t *testing.T) {
	p := &Provenance{GitCommit: "aaa"}
	if c, d := p.Commit(); c != "aaa" || d {
		t.Errorf("never resumed: commit %q dirty %v, want aaa false", c, d)
	}
	p.Resumed = append(p.Resumed, Resumption{At: time.Unix(5, 0).UTC(), GitCommit: "bbb", GitDirty: true})
	if c, d := p.Commit(); c != "bbb" || !d {
		t.Errorf("resumed: commit %q dirty %v, want bbb true", c, d)
	}

	var old Provenance
	if err := json.Unmarshal([]byte(`{"git_commit":"aaa","resumed":["2026-11-30T10:39:32Z"]}`), &old); err != nil {
		t.Fatal(err)
	}
	if len(old.Resumed) != 1 || old.Resumed[0].GitCommit != "" || !old.Resumed[0].At.Equal(time.Date(2026, 11, 30, 10, 39, 32, 0, time.UTC)) {
		t.Errorf("old resumption read as %+v", old.Resumed)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back Provenance
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Resumed) != 1 || back.Resumed[0] != p.Resumed[0] {
		t.Errorf("round trip: %+v, want %+v", back.Resumed, p.Resumed)
	}
}
