package kinds

import (
	"context"
	"flag"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/neighbour"
)

// memory_blowup: allocate and touch memory up to a target at a rate, then
// keep re-touching it.
func init() {
	Register(&Kind{
		Name:      trial.NeighbourMemoryBlowup,
		Summary:   "neighbour: allocate and touch memory up to a target",
		Neighbour: true,
		Keys:      []string{"target", "rate_per_sec", "chunk", "fill", "threads"},
		Typed: &Typed{
			PutNeighbour: func(n *trial.Neighbour, p any) { n.MemoryBlowup = p.(*trial.MemoryBlowupParams) },
			GetNeighbour: func(n trial.Neighbour) any { return n.MemoryBlowup },
		},
		Parse:        parseMemoryBlowup,
		RunNeighbour: runMemoryBlowup,
		Flags:        memoryBlowupFlags,
	})
}

func parseMemoryBlowup(in Input, role trial.Role, env Env) any {
	mb := &trial.MemoryBlowupParams{}
	if in.Required("target") {
		if t, max, ok := in.SizeOrMax("target"); ok {
			if max {
				in.Problem("target", `"max" is not a target; write a size such as "512M"`)
			}
			mb.TargetBytes = trial.Bytes(t)
			if t <= 0 && !max {
				in.Problem("target", "must be > 0")
			}
			if t > env.GuestMemBytes && env.NeighbourBudget.MemoryMax == 0 {
				in.Warn("target", "%dM exceeds guest memory plus swap (%dM) and budgets.neighbour has no memory_max: unless a policy caps it, the guest runs out and global reclaim and the OOM killer decide who survives (intended for an overcommitted node; otherwise set memory_max or lower target)",
					t>>20, env.GuestMemBytes>>20)
			}
		}
	}
	// "max": as fast as possible, like 0
	if r, max, ok := in.SizeOrMax("rate_per_sec"); ok && !max {
		mb.RateBytesPerSec = trial.Bytes(r)
	}
	if c, max, ok := in.SizeOrMax("chunk"); ok {
		mb.ChunkBytes = trial.Bytes(c)
		if max || (c > 0 && c < 4096) {
			in.Problem("chunk", "want a size >= 4K")
		}
	}
	if f, ok := in.Str("fill"); ok {
		switch f {
		case trial.FillSparse, trial.FillRandom:
			mb.Fill = f
		default:
			in.Problem("fill", "%q, want %q (one word per 512 bytes, cheap for zram) or %q (incompressible)", f, trial.FillSparse, trial.FillRandom)
		}
	}
	if n, ok := in.Int("threads"); ok {
		mb.Threads = int(n)
		if mb.Threads < 1 || mb.Threads > 256 {
			in.Problem("threads", "%d, want 1..256", mb.Threads)
		}
	}
	return mb
}

func runMemoryBlowup(ctx context.Context, r NeighbourRun) (Stats, error) {
	st, err := neighbour.MemoryBlowup(ctx, *r.Params.(*trial.MemoryBlowupParams), r.Seed)
	return Stats{Ops: st.Ops, Failed: st.Failed}, err
}

func memoryBlowupFlags(fs *flag.FlagSet, role trial.Role) func([]string) (any, error) {
	p := &trial.MemoryBlowupParams{TargetBytes: 256 << 20, RateBytesPerSec: 64 << 20, ChunkBytes: 1 << 20}
	sizeFlag(fs, &p.TargetBytes, "target", "bytes to reach")
	sizeFlag(fs, &p.RateBytesPerSec, "rate", "bytes per second (0: as fast as possible)")
	sizeFlag(fs, &p.ChunkBytes, "chunk", "allocation granule")
	fs.StringVar(&p.Fill, "fill", trial.FillSparse, "page contents: sparse (one word per 512 bytes) or random (incompressible)")
	fs.IntVar(&p.Threads, "threads", 1, "threads growing and re-touching their shares in parallel")
	return func([]string) (any, error) { return p, nil }
}
