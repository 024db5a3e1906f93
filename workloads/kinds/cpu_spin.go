package kinds

import (
	"context"
	"flag"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/neighbour"
)

// cpu_spin: busy threads.
func init() {
	Register(&Kind{
		Name:      trial.NeighbourCPUSpin,
		Summary:   "neighbour: N busy threads",
		Neighbour: true,
		Keys:      []string{"threads"},
		Typed: &Typed{
			PutNeighbour: func(n *trial.Neighbour, p any) { n.CPUSpin = p.(*trial.CPUSpinParams) },
			GetNeighbour: func(n trial.Neighbour) any { return n.CPUSpin },
		},
		Parse: func(in Input, role trial.Role, env Env) any {
			p := &trial.CPUSpinParams{Threads: env.GuestCPUs}
			if n, ok := in.Int("threads"); ok {
				p.Threads = int(n)
				if p.Threads < 1 || p.Threads > 256 {
					in.Problem("threads", "%d, want 1..256", p.Threads)
				}
			}
			return p
		},
		RunNeighbour: func(ctx context.Context, r NeighbourRun) (Stats, error) {
			st := neighbour.CPUSpin(ctx, *r.Params.(*trial.CPUSpinParams))
			return Stats{Ops: st.Ops, Failed: st.Failed}, nil
		},
		Flags: func(fs *flag.FlagSet, role trial.Role) func([]string) (any, error) {
			p := &trial.CPUSpinParams{}
			fs.IntVar(&p.Threads, "threads", 2, "busy threads")
			return func([]string) (any, error) { return p, nil }
		},
	})
}
