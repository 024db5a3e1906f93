package daemon

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
)

// The in-place parser reads what cgroupfs.ParseFlatKeyed reads, and
// leaves malformed text to it for the error.
func TestKnobFlatKeyedMatchesCgroupfs(t *testing.T) {
	dir := t.TempDir()
	for _, text := range []string{
		"low 0\nhigh 102\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\nsock_throttled 0\n",
		"populated 1\nfrozen 0\n",
		"populated 0\nfrozen 1",
		"",
		"usage_usec 18446744073709551615\nnew_key 7\n",
	} {
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		k := openKnob(p)
		got, err := k.flatKeyed()
		k.close()
		want, werr := cgroupfs.ParseFlatKeyed(p, strings.NewReader(text))
		if err != nil || werr != nil || !maps.Equal(got, want) {
			t.Errorf("%q: got %v %v, want %v %v", text, got, err, want, werr)
		}
	}
	for _, text := range []string{"high x\n", "high\n", "high 18446744073709551616\n", " 1\n"} {
		p := filepath.Join(dir, "bad")
		os.WriteFile(p, []byte(text), 0o644)
		k := openKnob(p)
		if _, err := k.flatKeyed(); err == nil {
			t.Errorf("%q: no error", text)
		}
		k.close()
	}
}
