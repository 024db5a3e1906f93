package main

import (
	"context"
	"errors"
	"testing"

	"github.com/agentcgroup/agentcgroup/harness/analysis/analysistest"
)

func TestCompareExitStatus(t *testing.T) {
	old, err := analysistest.WriteRun(t.TempDir(), 4, analysistest.Default())
	if err != nil {
		t.Fatal(err)
	}
	if err := runCompare(context.Background(), []string{old, old}); err != nil {
		t.Fatalf("a run against itself: %v", err)
	}
	m := analysistest.Default()
	base := m.LatencyUS
	m.LatencyUS = func(cfg, set string) (float64, float64) {
		med, tail := base(cfg, set)
		return med, tail * 3 // every tail three times heavier
	}
	worse, err := analysistest.WriteRun(t.TempDir(), 4, m)
	if err != nil {
		t.Fatal(err)
	}
	err = runCompare(context.Background(), []string{"--threshold", "20", old, worse})
	var ee exitError
	if !errors.As(err, &ee) || int(ee) != exitRegression {
		t.Fatalf("regressed run: err = %v, want exit status %d", err, exitRegression)
	}
	if err := runCompare(context.Background(), []string{"--alpha", "2", old, worse}); err == nil || errors.As(err, &ee) {
		t.Errorf("bad --alpha accepted: %v", err)
	}
}
