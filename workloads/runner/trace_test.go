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
	var steps []trial.TraceStep
	var sess trial.TraceSession
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var probe map[string]any
		json.Unmarshal(sc.Bytes(), &probe)
		if _, ok := probe["session"]; ok {
			json.Unmarshal(sc.Bytes(), &sess)
			continue
		}
		var s trial.TraceStep
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
	var task trial.TraceStep
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

// A delayed session starts late, and its elapsed time is its own makespan.
func TestTraceVictimDelay(t *testing.T) {
	v := trial.Victim{Name: "agent", Kind: trial.VictimTrace,
		Trace: &trial.TraceParams{Trace: "encode__httpx-2701", Compress: 50, MemScale: 0.1, MaxSteps: 2, Delay: trial.Duration(600 * time.Millisecond)}}
	began := time.Now()
	res := RunVictim(context.Background(), VictimRun{Victim: v, Seed: 1, Ready: soon, Dur: 3 * time.Second, Hlog: filepath.Join(t.TempDir(), "agent.hlog")})
	wall := time.Since(began)
	if res.Error != "" || res.Count != 2 {
		t.Fatalf("%+v", res)
	}
	if wall < 600*time.Millisecond || res.Elapsed.D() > wall-500*time.Millisecond {
		t.Errorf("ran %v in all, elapsed %v: the 600ms delay should come before the session, outside its makespan", wall, res.Elapsed)
	}
}

// A trace neighbour replays its session round after round until stopped.
func TestTraceNeighbourRepeats(t *testing.T) {
	n := trial.Neighbour{Name: "agent", Kind: trial.NeighbourTrace,
		Trace: &trial.TraceParams{Trace: "encode__httpx-2701", Compress: 1000, MemScale: 0.1, MaxSteps: 3}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res := RunNeighbour(ctx, n, 1)
	if res.Error != "" || res.Count <= 3 {
		t.Errorf("%+v: want more than one round of 3 calls in 3s (a round takes 3 process start-ups)", res)
	}
}
