package kinds

import (
	"context"
	"flag"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/victim"
)

// interactive: a request every period (open loop), each a fixed CPU loop
// and touches of a working set faulted in before the measured phase;
// latency counts from the request's intended start.
func init() {
	Register(&Kind{
		Name:        trial.VictimInteractive,
		Summary:     "victim: open-loop request/response loop",
		Victim:      true,
		Keys:        []string{"period", "cpu_loops", "touch", "working_set", "idle", "alloc_probe"},
		VictimClass: trial.ClassInteractive,
		Typed: &Typed{
			PutVictim: func(v *trial.Victim, p any) { v.Interactive = p.(*trial.InteractiveParams) },
			GetVictim: func(v trial.Victim) any { return v.Interactive },
		},
		Parse: parseInteractive,
		PrepareVictim: func(params any) (any, func(), error) {
			iw, err := victim.NewInteractiveWorker(*params.(*trial.InteractiveParams))
			if err != nil {
				return nil, nil, err
			}
			return iw, func() { iw.Close() }, nil
		},
		AllocProbe: func(params any) int64 { return int64(params.(*trial.InteractiveParams).AllocProbeBytes) },
		RunVictim: func(ctx context.Context, r VictimRun) error {
			iw := r.State.(*victim.InteractiveWorker)
			if r.Alloc != nil {
				iw.RecordAllocs(r.Alloc)
			}
			sched := victim.Schedule{Start: r.Start, Duration: r.Dur}
			return victim.RunInteractive(ctx, *r.Params.(*trial.InteractiveParams), r.Seed, sched, victim.RealClock{}, r.Rec, iw.Do)
		},
		Flags: interactiveFlags,
	})
}

func parseInteractive(in Input, role trial.Role, env Env) any {
	ip := &trial.InteractiveParams{}
	if in.Required("period") {
		if d, ok := in.Dur("period"); ok {
			ip.Period = trial.Duration(d)
			if ip.Period <= 0 {
				in.Problem("period", "must be > 0")
			}
		}
	}
	if n, ok := in.Int("cpu_loops"); ok {
		if n < 0 {
			in.Problem("cpu_loops", "must be >= 0")
		} else {
			ip.CPULoops = n
		}
	}
	if n, _, ok := in.SizeOrMax("touch"); ok {
		ip.TouchBytes = trial.Bytes(n)
	}
	ip.WorkingSetBytes = ip.TouchBytes
	if n, _, ok := in.SizeOrMax("working_set"); ok {
		ip.WorkingSetBytes = trial.Bytes(n)
		if ip.WorkingSetBytes < ip.TouchBytes {
			in.Problem("working_set", "smaller than touch: each request touches part of the working set")
		}
	}
	if d, ok := in.Dur("idle"); ok {
		ip.Idle = trial.Duration(d)
		if env.Duration > 0 && d >= env.Duration {
			in.Problem("idle", "%v is not shorter than timing.duration %v: no request would run", d, env.Duration)
		}
		if ip.WorkingSetBytes == 0 {
			in.Warn("idle", "the victim has no working_set: idling leaves nothing for reclaim to take")
		}
	}
	if n, max, ok := in.SizeOrMax("alloc_probe"); ok {
		if max || n < 4096 {
			in.Problem("alloc_probe", `want a size of at least a page, e.g. "1M"`)
		} else {
			ip.AllocProbeBytes = trial.Bytes(n)
		}
	}
	return ip
}

func interactiveFlags(fs *flag.FlagSet, role trial.Role) func([]string) (any, error) {
	p := &trial.InteractiveParams{Period: trial.Duration(20 * time.Millisecond), TouchBytes: 256 << 10, WorkingSetBytes: 16 << 20}
	fs.Var(&p.Period, "period", "request interval")
	fs.Int64Var(&p.CPULoops, "cpu-loops", 200_000, "CPU loop iterations per request (~2 ns each)")
	sizeFlag(fs, &p.TouchBytes, "touch", "bytes written per request")
	sizeFlag(fs, &p.WorkingSetBytes, "working-set", "working set the touches land in")
	fs.Var(&p.Idle, "idle", "wait this long before the first request, leaving the working set untouched")
	sizeFlag(fs, &p.AllocProbeBytes, "alloc-probe", "also map and touch this much fresh memory per request, timed on its own (0: off)")
	return func([]string) (any, error) { return p, nil }
}
