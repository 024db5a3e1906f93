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
