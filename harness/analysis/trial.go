package analysis

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// Roles whose cgroups are summed for group metrics.
const (
	RoleVictim    = "victim"
	RoleNeighbour = "neighbour"
)

// Latency percentiles reported per victim (HdrHistogram percentiles).
var Percentiles = []struct {
	Name string
	P    float64
}{{"p50", 50}, {"p95", 95}, {"p99", 99}, {"p999", 99.9}}

// AllocPercentiles are reported for a victim's allocation probe.
var AllocPercentiles = []struct {
	Name string
	P    float64
}{{"p50", 50}, {"p95", 95}, {"p99", 99}}

// EventKeys are the memory.events counters tabled per configuration.
var EventKeys = []string{"high", "max", "oom", "oom_kill"}

// TrialResult is what one finished trial contributes.
type TrialResult struct {
	ID        string
	Config    string
	Neighbour string
	Rep       int
	Raw       *trial.Raw
	// Latency is each victim's whole-trial histogram (intervals merged).
	Latency map[string]*hdrhistogram.Histogram
	// Metrics holds every per-trial number, by metric name (see Metric*).
	Metrics map[string]float64
	// Issues are reasons the configuration was not fully in force (e.g.
	// the scheduler did not start); the trial still counts as ran.
	Issues []string
	// Stack is what the trial's configuration runs; Checks say from the
	// stack's own counters which of its mechanisms engaged.
	Stack  stack.Config
	Checks []Check
	Counts Counts
}

// Metric names. Victim latency metrics are "<victim>.<stat>".
func LatencyMetric(victim, stat string) string { return victim + "." + stat }

// GroupMetric names a role-level metric, e.g. "neighbour.mem.high".
func GroupMetric(role, name string) string { return role + "." + name }

// FromRaw computes one trial's metrics from its raw data alone, as Analyze
// does for every trial of a run (tests of the guest runner use it to check
// what the report will make of a trial).
func FromRaw(r *trial.Raw) (*TrialResult, error) { return fromRaw(r) }

// fromRaw computes a trial's metrics from its raw data only.
func fromRaw(r *trial.Raw) (*TrialResult, error) {
	sp := r.Manifest.Spec
	tr := &TrialResult{
		ID: sp.ID, Config: sp.Cell, Neighbour: sp.Neighbour, Rep: sp.Rep, Raw: r,
		Latency: map[string]*hdrhistogram.Histogram{}, Metrics: map[string]float64{},
	}
	if tr.Neighbour == "" {
		tr.Neighbour = "none"
	}
	survived := 0
	for _, v := range r.Manifest.Victims {
		if v.OOMKilled || v.Stalled {
			// A failed session: it counts against survival, and it has
			// no latencies to contribute.
			tr.Metrics[LatencyMetric(v.Name, "survived")] = 0
			continue
		}
		survived++
		tr.Metrics[LatencyMetric(v.Name, "survived")] = 1
		h := r.Merged(v.Name)
		if h == nil || h.TotalCount() == 0 {
			return nil, fmt.Errorf("trial %s: victim %s recorded no latencies", sp.ID, v.Name)
		}
		tr.Latency[v.Name] = h
		for _, p := range Percentiles {
			tr.Metrics[LatencyMetric(v.Name, p.Name+"_ms")] = float64(h.ValueAtPercentile(p.P)) / 1000
		}
		tr.Metrics[LatencyMetric(v.Name, "mean_ms")] = h.Mean() / 1000
		tr.Metrics[LatencyMetric(v.Name, "max_ms")] = float64(h.Max()) / 1000
		tr.Metrics[LatencyMetric(v.Name, "count")] = float64(h.TotalCount())
		tr.Metrics[LatencyMetric(v.Name, "failed")] = float64(v.Failed)
		if v.Nominal > 0 {
			// A replayed trace: how much longer the session took than its
			// recorded (compressed) duration.
			tr.Metrics[LatencyMetric(v.Name, "stretch")] = float64(v.Elapsed) / float64(v.Nominal)
		}
		if a := r.MergedAlloc(v.Name); a != nil && a.TotalCount() > 0 {
			for _, p := range AllocPercentiles {
				tr.Metrics[LatencyMetric(v.Name, "alloc_"+p.Name+"_ms")] = float64(a.ValueAtPercentile(p.P)) / 1000
			}
		}
	}
	if n := len(r.Manifest.Victims); n > 0 {
		tr.Metrics[GroupMetric(RoleVictim, "survived")] = float64(survived) / float64(n)
	}
	oomNeighbours := 0
	for _, n := range r.Manifest.Neighbours {
		if n.OOMKilled {
			oomNeighbours++
		}
	}
	if len(r.Manifest.Neighbours) > 0 {
		tr.Metrics[GroupMetric(RoleNeighbour, "oom_killed")] = float64(oomNeighbours)
		if ms, overS, ok := sysOverHigh(r); ok {
			tr.Metrics[GroupMetric(RoleNeighbour, "sys_over_high_ms")] = ms
			tr.Metrics[GroupMetric(RoleNeighbour, "over_high_s")] = overS
		}
	}

	wall := r.After.Time.Sub(r.Before.Time).Seconds()
	if wall <= 0 {
		return nil, fmt.Errorf("trial %s: snapshots not in time order (before %v, after %v)", sp.ID, r.Before.Time, r.After.Time)
	}
	roles := map[string][]string{RoleVictim: nil, RoleNeighbour: nil}
	for _, v := range r.Manifest.Victims {
		roles[RoleVictim] = append(roles[RoleVictim], v.Cgroup)
	}
	for _, n := range r.Manifest.Neighbours {
		roles[RoleNeighbour] = append(roles[RoleNeighbour], n.Cgroup)
	}
	for _, role := range []string{RoleVictim, RoleNeighbour} {
		if role == RoleNeighbour && len(roles[role]) == 0 {
			continue // solo trial: no neighbour metrics rather than zeros
		}
		if err := groupMetrics(tr, r, role, groupCgroups(r, role, roles[role]), wall); err != nil {
			return nil, fmt.Errorf("trial %s: %w", sp.ID, err)
		}
	}
	for _, res := range []string{"cpu", "memory"} {
		before, after := systemPressure(r.Before.System, res), systemPressure(r.After.System, res)
		if before == "" || after == "" {
			continue
		}
		b, err1 := cgroupfs.ParsePressure("/proc/pressure/"+res, strings.NewReader(before))
		a, err2 := cgroupfs.ParsePressure("/proc/pressure/"+res, strings.NewReader(after))
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("trial %s: system %s pressure: %v %v", sp.ID, res, err1, err2)
		}
		short := map[string]string{"cpu": "cpu", "memory": "mem"}[res]
		tr.Metrics["system.psi_"+short+"_some_pct"] = pct(a.Some.Total-b.Some.Total, wall)
		tr.Metrics["system.psi_"+short+"_full_pct"] = pct(a.Full.Total-b.Full.Total, wall)
	}
	tr.Stack = sp.Stack
	tr.Checks, tr.Counts = Mechanisms(r)
	for _, p := range r.Manifest.Processes {
		if p.Started && p.CPUMs > 0 { // 0: recorded before the runner kept rusage
			tr.Metrics[GroupMetric(p.Name, "cpu_ms")] = p.CPUMs
		}
		if p.Started && p.SteadyMs > 0 {
			// Share of the whole guest (every vCPU) the helper used while
			// enforcing, start-up excluded.
			cpus := float64(max(r.Manifest.GuestCPUs, 1))
			tr.Metrics[GroupMetric(p.Name, "startup_cpu_ms")] = p.StartupCPUMs
			tr.Metrics[GroupMetric(p.Name, "steady_cpu_pct")] = 100 * p.SteadyCPUMs / (p.SteadyMs * cpus)
			if p.MeasureMs > 0 { // 0: recorded before the runner split the steady span
				tr.Metrics[GroupMetric(p.Name, "setup_cpu_ms")] = p.SetupCPUMs
				tr.Metrics[GroupMetric(p.Name, "measure_cpu_pct")] = 100 * p.MeasureCPUMs / (p.MeasureMs * cpus)
			}
		}
		switch {
		case !p.Started:
			tr.Issues = append(tr.Issues, fmt.Sprintf("%s did not start: %s", p.Name, p.Error))
		case p.Error != "":
			tr.Issues = append(tr.Issues, fmt.Sprintf("%s: %s", p.Name, p.Error))
		case p.Name == "scheduler" && p.SchedExt != "" && p.SchedExt != "enabled":
			tr.Issues = append(tr.Issues, fmt.Sprintf("scheduler ran but sched_ext state was %q", p.SchedExt))
		}
	}
	return tr, nil
}

// sysOverHigh is the CPU the neighbours burnt in the kernel while over
// their memory.high during the measured phase: the sum, over consecutive
// timeline samples of each neighbour's cgroup, of the cpu.stat system_usec
// increase across every interval in which the cgroup was over memory.high
// (memory.current above memory.high at either end, or memory.events high
// grew within it, since reclaim often brings usage back under the limit
// between two samples). Direct reclaim and the swap-in faults of pages it
// took are charged as system time to the task that triggers them, so this
// is the reclaim and refault cost of the throttled cgroups, together with
// whatever other kernel work they did in those intervals (an upper bound
// on reclaim alone, at the timeline's resolution). It also returns the
// seconds spent over memory.high, summed over neighbours. ok is false
// when the timeline does not carry system_usec and memory.high (older
// runners) or no neighbour had a memory.high.
func sysOverHigh(r *trial.Raw) (ms, overS float64, ok bool) {
	end := r.Manifest.Spec.Duration.D().Milliseconds()
	for _, ph := range r.Manifest.Phases {
		if ph.Name == "measure" && ph.End.After(ph.Start) {
			end = ph.End.Sub(ph.Start).Milliseconds()
		}
	}
	cgs := map[string]bool{}
	for _, n := range r.Manifest.Neighbours {
		cgs[n.Cgroup] = true
	}
	prev := map[string]trial.Sample{}
	var sysUS, overMS int64
	for _, smp := range r.Timeline {
		if !cgs[smp.Cgroup] {
			continue
		}
		if smp.HighLimit > 0 && smp.SystemUS > 0 {
			ok = true
		}
		a, seen := prev[smp.Cgroup]
		prev[smp.Cgroup] = smp
		if !seen || a.TMs < 0 || smp.TMs > end || smp.TMs <= a.TMs {
			continue
		}
		over := func(x trial.Sample) bool { return x.HighLimit > 0 && x.MemoryCurrent > x.HighLimit }
		if over(a) || over(smp) || smp.MemoryHigh > a.MemoryHigh {
			if d := smp.SystemUS - a.SystemUS; d > 0 {
				sysUS += d
			}
			overMS += smp.TMs - a.TMs
		}
	}
	return float64(sysUS) / 1000, float64(overMS) / 1000, ok
}

// groupCgroups picks the cgroups whose counters stand for a role: the
// role's session cgroup when it was snapshotted (memory.events and
// cpu.stat there are hierarchical, so it covers every step, including the
// per-call steps of a trace victim), otherwise the workloads' own cgroups.
func groupCgroups(r *trial.Raw, role string, workloads []string) []string {
	if len(workloads) > 0 {
		sess := workloads[0]
		if i := strings.Index(sess, "/step_"); i >= 0 {
			sess = sess[:i]
		}
		same := true
		for _, w := range workloads {
			if !strings.HasPrefix(w+"/", sess+"/") {
				same = false
			}
		}
		if _, ok := r.After.Cgroups[sess]; ok && same {
			return []string{sess}
		}
	}
	out := append([]string(nil), workloads...)
	sort.Strings(out)
	return out
}

func groupMetrics(tr *TrialResult, r *trial.Raw, role string, cgroups []string, wall float64) error {
	add := func(name string, v float64) { tr.Metrics[GroupMetric(role, name)] += v }
	for _, k := range EventKeys {
		add("mem."+k, 0)
	}
	for _, cg := range cgroups {
		after, ok := r.After.Cgroups[cg]
		if !ok {
			return fmt.Errorf("cgroup %s missing from the after snapshot", cg)
		}
		before := r.Before.Cgroups[cg] // absent: created after the snapshot, counters start at 0
		delta := func(file string) (map[string]int64, error) {
			a, err := cgroupfs.ParseFlatKeyed(cg+"/"+file, strings.NewReader(after[file]))
			if err != nil {
				return nil, err
			}
			b, err := cgroupfs.ParseFlatKeyed(cg+"/"+file+" (before)", strings.NewReader(before[file]))
			if err != nil {
				return nil, err
			}
			d := map[string]int64{}
			for k, v := range a {
				d[k] = int64(v) - int64(b[k])
			}
			return d, nil
		}
		ev, err := delta("memory.events")
		if err != nil {
			return err
		}
		for _, k := range EventKeys {
			add("mem."+k, float64(ev[k]))
		}
		ms, err := delta("memory.stat")
		if err != nil {
			return err
		}
		add("pgmajfault", float64(ms["pgmajfault"]))
		add("pgscan", float64(ms["pgscan"]))
		add("pgsteal", float64(ms["pgsteal"]))
		cs, err := delta("cpu.stat")
		if err != nil {
			return err
		}
		add("cpu_usage_ms", float64(cs["usage_usec"])/1000)
		add("throttled_ms", float64(cs["throttled_usec"])/1000)
		for _, res := range []struct{ file, short string }{{"cpu.pressure", "cpu"}, {"memory.pressure", "mem"}} {
			if after[res.file] == "" {
				continue
			}
			a, err := cgroupfs.ParsePressure(cg+"/"+res.file, strings.NewReader(after[res.file]))
			if err != nil {
				return err
			}
			var b cgroupfs.Pressure
			if before[res.file] != "" {
				if b, err = cgroupfs.ParsePressure(cg+"/"+res.file+" (before)", strings.NewReader(before[res.file])); err != nil {
					return err
				}
			}
			// Several cgroups: report the worst, since stall time does not add up.
			some, full := pct(a.Some.Total-b.Some.Total, wall), pct(a.Full.Total-b.Full.Total, wall)
			k1, k2 := GroupMetric(role, "psi_"+res.short+"_some_pct"), GroupMetric(role, "psi_"+res.short+"_full_pct")
			tr.Metrics[k1] = math.Max(tr.Metrics[k1], some)
			tr.Metrics[k2] = math.Max(tr.Metrics[k2], full)
		}
	}
	return nil
}

// pct is stall time as a share of wall seconds.
func pct(stall time.Duration, wallSec float64) float64 {
	return stall.Seconds() / wallSec * 100
}

// systemPressure finds /proc/pressure/<res> in a snapshot's system map,
// whatever exact key the guest used for it.
func systemPressure(sys map[string]string, res string) string {
	keys := make([]string, 0, len(sys))
	for k := range sys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.Contains(k, "pressure") && strings.HasSuffix(k, res) {
			return sys[k]
		}
	}
	return ""
}
