package kinds

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// The standalone flags read sizes and durations as internal/units does,
// and refuse "max" as a workload's size.
func TestFlagsReadUnits(t *testing.T) {
	parse := func(kind string, role trial.Role, args ...string) (any, error) {
		fs := flag.NewFlagSet(kind, flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		build := Lookup(kind).Flags(fs, role)
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		return build(fs.Args())
	}
	p, err := parse("interactive", trial.RoleVictim, "-touch", "64KiB", "-working-set", "1.5M", "-period", "5ms", "-idle", "1m30s")
	if err != nil {
		t.Fatal(err)
	}
	ip := p.(*trial.InteractiveParams)
	if ip.TouchBytes != 64<<10 || ip.WorkingSetBytes != 3<<19 || ip.Period.D() != 5*time.Millisecond || ip.Idle.D() != 90*time.Second {
		t.Errorf("interactive: %+v", ip)
	}
	p, err = parse("memory_blowup", trial.RoleNeighbour, "-target", "1g", "-rate", "64 MB")
	if err != nil {
		t.Fatal(err)
	}
	if mb := p.(*trial.MemoryBlowupParams); mb.TargetBytes != 1<<30 || mb.RateBytesPerSec != 64<<20 || mb.ChunkBytes != 1<<20 {
		t.Errorf("memory_blowup: %+v", mb)
	}
	for _, c := range []struct {
		kind string
		role trial.Role
		args []string
		msg  string
	}{
		{"interactive", trial.RoleVictim, []string{"-touch", "max"}, `invalid value "max" for flag -touch: "max" is not a size here`},
		{"interactive", trial.RoleVictim, []string{"-period", "-1s"}, `invalid value "-1s" for flag -period: bad duration "-1s": negative`},
		{"tool_burst", trial.RoleVictim, []string{"-alloc", "4X"}, `invalid value "4X" for flag -alloc: bad size "4X"`},
		{"tool_burst", trial.RoleVictim, []string{"-period", "soon"}, `invalid value "soon" for flag -period: bad duration "soon"`},
		{"fork_storm", trial.RoleNeighbour, []string{"-hold", "10"}, `invalid value "10" for flag -hold: bad duration "10"`},
		{"memory_blowup", trial.RoleNeighbour, []string{"-chunk", "-4K"}, `invalid value "-4K" for flag -chunk: bad size "-4K": negative`},
	} {
		if _, err := parse(c.kind, c.role, c.args...); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s %v: error %v, want it to contain %q", c.kind, c.args, err, c.msg)
		}
	}
}
