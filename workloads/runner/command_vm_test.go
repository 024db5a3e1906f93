package runner

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/harness/vmtest"
)

// A command victim and neighbour (workloads/kinds) in a trial: each runs
// in its own step cgroup (the commands check /proc/self/cgroup and fail
// otherwise), the victim's printed latencies reach its interval log and
// the neighbour is restarted until the victims finish.
func TestCommandInGuest(t *testing.T) {
	if vmtest.Run(t, vmtest.Options{CPUs: 2, MemMB: 512, Timeout: 4 * time.Minute}) {
		return
	}
	spec := trial.ExampleSpec()
	spec.ID = "command"
	spec.Warmup = 0
	spec.Duration = trial.Duration(4 * time.Second)
	spec.Sessions = []trial.Session{
		{ID: "victim", Steps: []trial.Step{{ID: "cmd", Class: trial.ClassToolBurst}}},
		{ID: "noisy", Steps: []trial.Step{{ID: "noise", Class: trial.ClassBackground}}},
	}
	victim := `grep -q /step_cmd /proc/self/cgroup || exit 3; i=0; while [ $i -lt 20 ]; do echo 2500us; i=$((i+1)); done; echo done; sleep 1.5`
	noise := `grep -q /step_noise /proc/self/cgroup || exit 3; sleep 0.2`
	spec.Victims = []trial.Victim{{Name: "cmd", Kind: "command", Session: "victim", Step: "cmd",
		Params: mustJSON(t, map[string]any{"argv": []string{"/bin/sh", "-c", victim}, "parser": "lines"})}}
	spec.Neighbours = []trial.Neighbour{{Name: "noise", Kind: "command", Session: "noisy", Step: "noise",
		Params: mustJSON(t, map[string]any{"argv": []string{"/bin/sh", "-c", noise}})}}
	r := guestTrial(t, spec, filepath.Join(t.TempDir(), "trial"))
	v, n := r.Manifest.Victims[0], r.Manifest.Neighbours[0]
	if v.Error != "" || v.Count != 20 {
		t.Errorf("victim: %d latencies, error %q; want 20", v.Count, v.Error)
	}
	if h := r.Merged("cmd"); h.TotalCount() != 20 || h.ValueAtQuantile(50) < 2400 || h.ValueAtQuantile(50) > 2600 {
		t.Errorf("victim histogram: n %d p50 %d us, want 20 of 2500 us", h.TotalCount(), h.ValueAtQuantile(50))
	}
	if n.Error != "" || n.Count < 2 || n.Failed != 0 {
		t.Errorf("neighbour: %d runs, %d failed, error %q; want >= 2 runs in its cgroup", n.Count, n.Failed, n.Error)
	}
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
