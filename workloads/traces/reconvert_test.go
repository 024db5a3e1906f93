package traces

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/workloads/trace"
)

// recordings is where the project's shared data keeps the original traces,
// relative to this package (the repository sits beside shared/).
const recordings = "../../../shared/traces/agentcgroup-swebench-haiku"

// The committed traces are exactly what the converter makes from the
// recordings, so they can be regenerated and audited.
func TestEmbeddedTracesMatchRecordings(t *testing.T) {
	if _, err := os.Stat(recordings); err != nil {
		t.Skipf("recordings not available (%v); this check needs the shared/ directory beside the repository", err)
	}
	for _, n := range Names() {
		have, err := Load(n)
		if err != nil {
			t.Fatal(err)
		}
		want, err := trace.Convert(filepath.Join(recordings, n), n, have.Source, have.License)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(have, want) {
			a, _ := json.Marshal(have)
			b, _ := json.Marshal(want)
			t.Errorf("%s differs from a fresh conversion (%d vs %d bytes); regenerate it (see README.md)", n, len(a), len(b))
		}
		if !strings.Contains(have.Source, n) {
			t.Errorf("%s: source %q does not name the task", n, have.Source)
		}
	}
}

// sharedTraces holds every recorded dataset, one directory each, whose
// subdirectories are recorded sessions.
const sharedTraces = "../../../shared/traces"

// Every recording we have converts: parallel calls, calls listed out of
// start order and all, so none is silently left out of an evaluation.
func TestEveryRecordingConverts(t *testing.T) {
	sets, err := os.ReadDir(sharedTraces)
	if err != nil {
		abs, _ := filepath.Abs(sharedTraces)
		t.Skipf("recordings not available at %s (%v); this check needs the shared/ directory beside the repository", abs, err)
	}
	for _, set := range sets {
		if !set.IsDir() {
			continue
		}
		dir := filepath.Join(sharedTraces, set.Name())
		recs, err := trace.ConvertDir(dir, func(n string) string { return set.Name() + "/" + n }, "GPL-2.0")
		if err != nil {
			t.Error(err)
			continue
		}
		calls, overlapping, reordered, most := 0, 0, 0, 0
		for _, r := range recs {
			if r.Err != nil {
				t.Errorf("%s/%s rejected: %v", set.Name(), r.Name, r.Err)
				continue
			}
			c := r.Trace.Concurrency()
			calls += len(r.Trace.Steps)
			overlapping += c.Overlapping
			reordered += r.Reordered
			most = max(most, c.MaxParallel)
		}
		t.Logf("%s: %d recordings, %d calls, %d overlapping another call, %d listed out of start order, up to %d at once",
			set.Name(), len(recs), calls, overlapping, reordered, most)
	}
}
