package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// A recorded session whose calls overlap replays them at the same time:
// pre-commit-973 opens with a subagent (Task) call during which four Globs
// run. Each step is its own process and has its own line in the steps log,
// and the session line gives the makespan against the recorded one.
func TestTraceReplaysParallelCallsConcurrently(t *testing.T) {
	v := trial.Victim{Name: "agent", Kind: trial.VictimTrace,
		Trace: &trial.TraceParams{Trace: "pre-commit__pre-commit-973", Compress: 100, MemScale: 0.1, MaxSteps: 5}}
	hlog := filepath.Join(t.TempDir(), v.Name+".hlog")
	res := RunVictim(context.Background(), VictimRun{Victim: v, Seed: 1, Ready: soon, Dur: 3 * time.Second, Hlog: hlog})
	if res.Error != "" || res.Count != 5 || res.Failed != 0 {
		t.Fatalf("%+v", res)
	}
	f, err := os.Open(TraceStepsPath(hlog))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps []traceStepLine
	var sess traceSessionLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var probe map[string]any
		json.Unmarshal(sc.Bytes(), &probe)
		if _, ok := probe["session"]; ok {
			json.Unmarshal(sc.Bytes(), &sess)
			continue
		}
		var s traceStepLine
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatal(err)
		}
		steps = append(steps, s)
	}
	if len(steps) != 5 || sess.Started != 5 {
		t.Fatalf("%d step lines, session %+v", len(steps), sess)
	}
	end := map[int]trial.Duration{}
	for _, s := range steps {
		end[s.Step] = s.Began + s.Latency
	}
	var task traceStepLine
	for _, s := range steps {
		if s.Step == 0 {
			task = s
		}
	}
	if task.Tool != "Task" {
		t.Fatalf("step 0 is %q, want the Task call", task.Tool)
	}
	for _, s := range steps {
		if s.Step != 0 && !(s.Began < end[0]) {
			t.Errorf("step %d (%s) began at %v, after the Task call it overlapped ended (%v)", s.Step, s.Tool, s.Began, end[0])
		}
		if s.Step != 0 && len(s.After) != 0 {
			t.Errorf("step %d waits for %v; it overlapped every call before it", s.Step, s.After)
		}
	}
	if sess.Recorded != res.Nominal || sess.Recorded.D() < time.Second || sess.Makespan < sess.Recorded {
		t.Errorf("session %+v, victim nominal %v: want the Task's recorded 1.05 s makespan, replayed no shorter", sess, res.Nominal)
	}
}
