package traces

import (
	"strings"
	"testing"
)

func TestEmbeddedTracesLoadWithAttribution(t *testing.T) {
	names := Names()
	if len(names) < 3 {
		t.Fatalf("only %d embedded traces", len(names))
	}
	for _, n := range names {
		tr, err := Load(n)
		if err != nil {
			t.Fatal(err)
		}
		if tr.Name != n || !strings.Contains(tr.Source, "yunwei37/agentcgroup") || tr.License != "GPL-2.0" {
			t.Errorf("%s: name %q source %q license %q", n, tr.Name, tr.Source, tr.License)
		}
	}
	if _, err := Load("nope"); err == nil || !strings.Contains(err.Error(), "dask__dask-11628") {
		t.Errorf("unknown trace error should list the embedded ones: %v", err)
	}
}
