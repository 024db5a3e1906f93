package kinds

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/neighbour"
)

// fork_storm: fork children at a rate, at most concurrency alive; pids.max
// bounds it too.
func init() {
	Register(&Kind{
		Name:      trial.NeighbourForkStorm,
		Summary:   "neighbour: fork/exit children at a rate, bounded by pids.max",
		Neighbour: true,
		Keys:      []string{"rate", "concurrency"},
		Typed: &Typed{
			PutNeighbour: func(n *trial.Neighbour, p any) { n.ForkStorm = p.(*trial.ForkStormParams) },
			GetNeighbour: func(n trial.Neighbour) any { return n.ForkStorm },
		},
		Parse: func(in Input, role trial.Role, env Env) any {
			p := &trial.ForkStormParams{Concurrency: 8}
			if r, ok := in.Float("rate"); ok {
				p.Rate = r
				if r < 0 {
					in.Problem("rate", "must be >= 0 (0 = as fast as possible)")
				}
			}
			if c, ok := in.Int("concurrency"); ok {
				p.Concurrency = int(c)
				if p.Concurrency < 1 || p.Concurrency > 4096 {
					in.Problem("concurrency", "%d, want 1..4096", p.Concurrency)
				}
			}
			return p
		},
		RunNeighbour: func(ctx context.Context, r NeighbourRun) (Stats, error) {
			p := r.Params.(*trial.ForkStormParams)
			var f neighbour.Forker = neighbour.ForkExit{Hold: p.Hold.D()}
			if e := p.Exec; e != "" {
				if _, err := os.Stat(e); err != nil {
					return Stats{}, fmt.Errorf("fork_storm exec %q: %v (name a program present in the guest, e.g. /bin/true)", e, err)
				}
				f = neighbour.ForkExec{Path: e}
			}
			st := neighbour.ForkStorm(ctx, *p, f)
			return Stats{Ops: st.Ops, Failed: st.Failed}, nil
		},
		Flags: func(fs *flag.FlagSet, role trial.Role) func([]string) (any, error) {
			p := &trial.ForkStormParams{}
			fs.Float64Var(&p.Rate, "rate", 0, "children per second (0: as fast as possible)")
			fs.IntVar(&p.Concurrency, "concurrency", 8, "children alive at once")
			fs.StringVar(&p.Exec, "exec", "", "program each child executes (default: exit right after fork)")
			fs.Var(&p.Hold, "hold", "how long each forked child lives")
			return func([]string) (any, error) { return p, nil }
		},
	})
}
