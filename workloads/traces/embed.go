// Package traces holds converted agent-session traces (see README.md for
// their source and licence) compiled into the binary, so the guest needs no
// extra files to replay them.
package traces

import (
	"embed"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/agentcgroup/agentcgroup/workloads/trace"
)

//go:embed *.json
var files embed.FS

// Names lists the embedded traces.
func Names() []string {
	ents, _ := files.ReadDir(".")
	var out []string
	for _, e := range ents {
		out = append(out, strings.TrimSuffix(e.Name(), ".json"))
	}
	sort.Strings(out)
	return out
}

// Load returns an embedded trace by name.
func Load(name string) (*trace.Trace, error) {
	b, err := files.ReadFile(name + ".json")
	if err != nil {
		return nil, fmt.Errorf("trace %q: not embedded; have %s (add one with `agentwork trace-convert` into workloads/traces/)", name, strings.Join(Names(), ", "))
	}
	var t trace.Trace
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("trace %q: %v", name, err)
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return &t, nil
}
