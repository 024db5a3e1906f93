package runner

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/analysis"
	"github.com/agentcgroup/agentcgroup/harness/analysis/analysistest"
	"github.com/agentcgroup/agentcgroup/harness/lab"
	"github.com/agentcgroup/agentcgroup/harness/plan"
	"github.com/agentcgroup/agentcgroup/harness/results"
	"github.com/agentcgroup/agentcgroup/harness/scenario"
	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// fakeGuest stands in for lab.Exec: it checks the job the runner built and
// writes the trial's raw output the way the guest would.
type fakeGuest struct {
	t     *testing.T
	calls map[string]int
	fail  map[string]int // trial id -> attempts that fail
	after int            // cancel once this many boots happened (0: never)
	stop  context.CancelFunc
	boots int
}

func (f *fakeGuest) exec(ctx context.Context, j lab.Job) (*lab.Result, error) {
	f.boots++
	if f.after > 0 && f.boots > f.after {
		f.stop()
		return nil, ctx.Err()
	}
	if got := strings.Join(j.Argv, " "); got != "agentwork trial --spec /run/trial.json --out /out/trial" {
		f.t.Errorf("argv = %q", got)
	}
	spec, err := trial.DecodeSpec(j.Files[GuestSpec])
	if err != nil {
		f.t.Fatalf("runner sent an invalid spec: %v", err)
	}
	if j.MemMB != 1024 || j.CPUs != 2 || j.Timeout <= 0 || j.Kernel != "stock" {
		f.t.Errorf("job sizing %+v", j)
	}
	f.calls[spec.ID]++
	if f.calls[spec.ID] <= f.fail[spec.ID] {
		return &lab.Result{ExitCode: 1, Accel: "tcg"}, nil // guest ran, trial failed, no output
	}
	tr := plan.Trial{ID: spec.ID, Config: spec.Cell, Neighbour: spec.Neighbour, Rep: spec.Rep, Spec: *spec}
	if err := analysistest.WriteTrial(filepath.Join(j.OutDir, "trial"), tr, analysistest.Default(), time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)); err != nil {
		f.t.Fatal(err)
	}
	return &lab.Result{ExitCode: 0, Accel: "tcg", BootToCommand: time.Second, Run: 5 * time.Second}, nil
}

func setup(t *testing.T) (*scenario.Scenario, *plan.Plan, *results.Run) {
	t.Helper()
	s, err := scenario.Parse("synth.toml", []byte(analysistest.Scenario(2)), scenario.Kernels{"stock": false})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	run, err := results.Create(t.TempDir(), s.Name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run.Dir, results.ScenarioFile), []byte(analysistest.Scenario(2)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run.WritePlan(p); err != nil {
		t.Fatal(err)
	}
	return s, p, run
}

func TestRunRetriesSkipsAndGoesOn(t *testing.T) {
	s, p, run := setup(t)
	g := &fakeGuest{t: t, calls: map[string]int{}, fail: map[string]int{
		"baseline.cpu.r00": 1, // fails once, then succeeds
		"joint.mem.r01":    2, // fails both attempts
	}}
	var progress bytes.Buffer
	prov := &results.Provenance{TrialSeeds: map[string]uint64{}}
	sum, err := Run(context.Background(), s, p, run, Options{
		Exec: g.exec, Progress: &progress, Provenance: prov,
		Unavailable: map[string]string{"cpu-only": "scheduler binary absent"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// 4 configs x 3 sets x 2 reps = 24; cpu-only's 6 skipped.
	if sum.Skipped != 6 || sum.Ran != 18 || sum.Failed != 1 || sum.OK != 17 {
		t.Errorf("summary %+v", sum)
	}
	if g.calls["baseline.cpu.r00"] != 2 || g.calls["joint.mem.r01"] != 2 || g.calls["cpu-only.cpu.r00"] != 0 {
		t.Errorf("calls %v", g.calls)
	}
	o, _, _ := run.Outcome("joint.mem.r01")
	if o.Status != results.StatusFailed || len(o.Attempts) != 2 || !strings.Contains(o.Reason, "exited 1") {
		t.Errorf("failed outcome %+v", o)
	}
	o, _, _ = run.Outcome("baseline.cpu.r00")
	if o.Status != results.StatusOK || len(o.Attempts) != 2 {
		t.Errorf("retried outcome %+v", o)
	}
	lines := strings.Split(strings.TrimSpace(progress.String()), "\n")
	if len(lines) != 24 || !strings.HasPrefix(lines[23], "[24/24]") || !strings.Contains(progress.String(), "ETA") {
		t.Errorf("progress:\n%s", progress.String())
	}
	if len(prov.Accelerators) != 1 || prov.Accelerators[0] != "tcg" || len(prov.TrialSeeds) != 24 {
		t.Errorf("provenance %+v", prov)
	}
	// The run analyses: cpu-only is labelled, the failed trial listed.
	a, err := analysis.Analyze(run.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Trials) != 17 || len(a.Failed) != 1 || len(a.Skipped) != 6 || len(a.Unavailable["cpu-only"]) == 0 {
		t.Errorf("analysis: %d trials, failed %v, skipped %d, unavailable %v", len(a.Trials), a.Failed, len(a.Skipped), a.Unavailable)
	}
	ents, _ := os.ReadDir(filepath.Join(run.Dir, results.TrialsDir))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("staging directory left behind: %s", e.Name())
		}
	}
}

func TestResume(t *testing.T) {
	s, p, run := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := &fakeGuest{t: t, calls: map[string]int{}, after: 5, stop: cancel}
	prov := &results.Provenance{GitCommit: "first", TrialSeeds: map[string]uint64{}}
	_, err := Run(ctx, s, p, run, Options{Exec: g.exec, Provenance: prov})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: err = %v", err)
	}
	ids, _ := run.TrialIDs()
	if len(ids) != 5 {
		t.Fatalf("%d trials kept after interruption, want 5", len(ids))
	}
	g2 := &fakeGuest{t: t, calls: map[string]int{}}
	prov.Resumed = append(prov.Resumed, results.Resumption{GitCommit: "second"})
	sum, err := Run(context.Background(), s, p, run, Options{Exec: g2.exec, Provenance: prov})
	if err != nil {
		t.Fatal(err)
	}
	if sum.AlreadyDone != 5 || sum.Ran != 19 {
		t.Errorf("resume summary %+v", sum)
	}
	for _, id := range ids {
		if g2.calls[id] != 0 {
			t.Errorf("finished trial %s ran again", id)
		}
	}
	// Each trial names the code that ran it.
	commits := map[string]int{}
	all, _ := run.TrialIDs()
	for _, id := range all {
		o, _, _ := run.Outcome(id)
		for _, a := range o.Attempts {
			commits[a.GitCommit]++
		}
	}
	if commits["first"] != 5 || commits["second"] != 19 || len(commits) != 2 {
		t.Errorf("attempts per commit %v, want first 5, second 19", commits)
	}
}

func TestSamePlan(t *testing.T) {
	_, p, _ := setup(t)
	q := *p
	q.Trials = append([]plan.Trial(nil), p.Trials...)
	if err := SamePlan(p, &q); err != nil {
		t.Fatal(err)
	}
	q.Trials[0], q.Trials[1] = q.Trials[1], q.Trials[0]
	if err := SamePlan(p, &q); !errors.Is(err, ErrPlanChanged) {
		t.Errorf("reordered plan accepted: %v", err)
	}
}
