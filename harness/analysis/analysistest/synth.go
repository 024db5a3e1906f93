// Package analysistest builds synthetic results directories, laid out
// exactly as agentbench eval writes them, for tests of analysis, report and
// compare. Latencies are drawn from a seeded generator and recorded into
// real HdrHistogram interval logs; nothing downstream is special-cased.
package analysistest

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/analysis"
	"github.com/agentcgroup/agentcgroup/harness/plan"
	"github.com/agentcgroup/agentcgroup/harness/results"
	"github.com/agentcgroup/agentcgroup/harness/scenario"
	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// Scenario is the synthetic scenario: one interactive victim, neighbour
// sets "cpu" and "mem", all four configurations, solo runs.
func Scenario(reps int) string {
	return fmt.Sprintf(`
name = "synth"
description = "synthetic data for tests"
seed = 11
repetitions = %d
[timing]
duration = "4s"
[budgets.victim]
memory_high = "64M"
[budgets.neighbour]
memory_high = "96M"
memory_max = "128M"
[daemon]
config = "# test policy"
[[victims]]
name = "chat"
kind = "interactive"
period = "10ms"
[[neighbours]]
name = "spin"
set = "cpu"
kind = "cpu_spin"
[[neighbours]]
name = "blow"
set = "mem"
kind = "memory_blowup"
target = "200M"
`, reps)
}

// Model says what a trial's victim experiences.
type Model struct {
	// LatencyUS returns the median latency (us) and the tail factor (how
	// much heavier the worst 2% are) for a cell.
	LatencyUS func(config, neighbour string) (median, tail float64)
	// HighEvents is the neighbour's memory.high event count per trial.
	HighEvents func(config, neighbour string) int64
	// Evidence, when set, replaces the evidence a trial's stack would
	// report if every mechanism of its configuration engaged.
	Evidence func(t plan.Trial) trial.Evidence
	// Fail lists trial ids to record as failed.
	Fail map[string]bool
	// Samples per trial (default 2000).
	Samples int
	// TrialNoise, when > 0, scales a trial's latencies by a factor drawn
	// from [1-TrialNoise, 1+TrialNoise], seeded by the trial id: noise
	// that differs between the configurations of a repetition, so paired
	// comparisons see pairs scatter both ways when there is no effect.
	TrialNoise float64
	// RepNoise, when > 0, scales every trial of a repetition by one factor
	// drawn from [1-RepNoise, 1+RepNoise], seeded by the repetition: a host
	// that is busier in some repetition blocks, which pairing cancels.
	RepNoise float64
	// OOMKilled, when set, says in which trials the OOM killer ended the
	// victim: it then has no latencies and its result carries the marker,
	// as the guest runner writes it.
	OOMKilled func(t plan.Trial) bool
	// Stalled, when set, says in which trials the victim had not finished
	// by the deadline and was killed without a result, as the guest
	// runner records it.
	Stalled func(t plan.Trial) bool
	// AllocUS, when set, gives the victim an allocation probe whose
	// latencies (us) are drawn around this median for the cell.
	AllocUS func(config, neighbour string) float64
	// VCPUWaitShare, when > 0, is every trial's vCPU wait share (a host
	// busy with other work); otherwise trials wait 0-2.9%, as on a quiet
	// host.
	VCPUWaitShare float64
	// Resumed, when set, says which trials a resumption of the run at
	// commit "resumed" finished; the rest ran at "synthetic".
	Resumed func(t plan.Trial) bool
}

// Default is a model where neighbours slow the victim in baseline, joint
// helps, and the memory set raises memory.high events.
func Default() Model {
	return Model{
		LatencyUS: func(cfg, set string) (float64, float64) {
			med, tail := 2000.0, 3.0
			if set != plan.Solo {
				med, tail = 3000, 10
				if cfg == "joint" || cfg == "cpu-only" {
					med, tail = 2300, 4
				}
			}
			return med, tail
		},
		HighEvents: func(cfg, set string) int64 {
			if set == "mem" {
				if cfg == "joint" || cfg == "mem-only" {
					return 400
				}
				return 150
			}
			return 0
		},
	}
}

// WriteRun writes a complete results directory for the synthetic scenario
// and returns its path.
func WriteRun(base string, reps int, m Model) (string, error) {
	return WriteRunOf(base, Scenario(reps), m)
}

// WriteRunOf is WriteRun for another scenario text (its kernel "stock" or
// "patched"), such as Scenario with a [sweep] appended; the model sees its
// cells' labels.
func WriteRunOf(base, text string, m Model) (string, error) {
	if m.Samples == 0 {
		m.Samples = 2000
	}
	s, err := scenario.Parse("synth.toml", []byte(text), scenario.Kernels{"stock": false, "patched": true})
	if err != nil {
		return "", err
	}
	p, err := plan.Build(s)
	if err != nil {
		return "", err
	}
	start := time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC)
	run, err := results.Create(base, s.Name, start)
	if err != nil {
		return "", err
	}
	if err := fsutil.WriteFile(filepath.Join(run.Dir, results.ScenarioFile), []byte(text)); err != nil {
		return "", err
	}
	if err := run.WritePlan(p); err != nil {
		return "", err
	}
	prov := &results.Provenance{Scenario: s.Name, ScenarioSHA256: s.Hash, Started: start, GitCommit: "synthetic",
		Seed: s.Seed, TrialSeeds: map[string]uint64{}, Accelerators: []string{"tcg"}, HostCPUs: 2}
	for i, t := range p.Trials {
		prov.TrialSeeds[t.ID] = t.Spec.Seed
		staged, err := run.Staging(t.ID)
		if err != nil {
			return "", err
		}
		o := results.Outcome{ID: t.ID, Status: results.StatusOK,
			Attempts: []results.Attempt{{Started: start, Accel: "tcg", HostLoad1: 1.5 + float64(i%4), GitCommit: prov.GitCommit,
				VCPURunMs: 20000, VCPUWaitMs: float64(100 * (i % 7))}}}
		if w := m.VCPUWaitShare; w > 0 {
			o.Attempts[0].VCPUWaitMs = 20000 * w / (1 - w)
		}
		if m.Resumed != nil && m.Resumed(t) {
			o.Attempts[0].GitCommit = "resumed"
		}
		if m.Fail[t.ID] {
			o.Status, o.Reason = results.StatusFailed, "synthetic failure"
		} else if err := WriteTrial(filepath.Join(staged, "trial"), t, m, start.Add(time.Duration(i)*time.Minute)); err != nil {
			return "", err
		}
		if err := run.Commit(staged, o); err != nil {
			return "", err
		}
	}
	if m.Resumed != nil {
		prov.Resumed = []results.Resumption{{At: start.Add(time.Hour), GitCommit: "resumed"}}
	}
	return run.Dir, run.WriteProvenance(prov)
}

// WriteTrial writes one trial's guest output (the harness/trial layout)
// into dir, as the guest runner would.
func WriteTrial(dir string, t plan.Trial, m Model, start time.Time) error {
	if m.Samples == 0 {
		m.Samples = 2000
	}
	sp := t.Spec
	rng := rand.New(rand.NewPCG(sp.Seed, 1)) // same draws for every configuration of a repetition, as in a real paired run
	med, tail := m.LatencyUS(t.Config, t.Neighbour)
	if m.RepNoise > 0 {
		r := rand.New(rand.NewPCG(uint64(t.Rep)+1, 0x726570)) // "rep"
		med *= 1 + m.RepNoise*(2*r.Float64()-1)
	}
	if m.TrialNoise > 0 {
		r := rand.New(rand.NewPCG(sp.Seed, fnv64(t.ID)))
		med *= 1 + m.TrialNoise*(2*r.Float64()-1)
	}
	writeLog := func(path, comment string, median, tail float64) (int64, error) {
		var buf bytes.Buffer
		lg, err := trial.NewIntervalLog(&buf, start, comment)
		if err != nil {
			return 0, err
		}
		var count int64
		for iv := 0; iv < 4; iv++ {
			h := trial.NewLatencyHistogram()
			for i := 0; i < m.Samples/4; i++ {
				v := median * (0.8 + 0.4*rng.Float64())
				if rng.Float64() < 0.02 {
					v *= tail * (1 + rng.Float64())
				}
				if err := h.RecordValue(int64(v)); err != nil {
					return 0, err
				}
				count++
			}
			s := start.Add(time.Duration(iv) * time.Second)
			if err := lg.Write(h, s, s.Add(time.Second)); err != nil {
				return 0, err
			}
		}
		return count, fsutil.WriteFile(filepath.Join(dir, path), buf.Bytes())
	}
	vcg := trial.StepPath("victim", "chat")
	chat := trial.WorkloadResult{Name: "chat", Kind: trial.VictimInteractive, Cgroup: vcg,
		Elapsed: trial.Duration(5 * time.Second), Nominal: trial.Duration(4 * time.Second)}
	switch {
	case m.OOMKilled != nil && m.OOMKilled(t):
		chat = trial.WorkloadResult{Name: "chat", Kind: trial.VictimInteractive, Cgroup: vcg, ExitCode: -1, Signal: "killed", OOMKilled: true}
	case m.Stalled != nil && m.Stalled(t):
		chat = trial.WorkloadResult{Name: "chat", Kind: trial.VictimInteractive, Cgroup: vcg, ExitCode: -1, Signal: "killed", Stalled: true}
	default:
		count, err := writeLog(trial.HistogramPath("chat"), "victim chat", med, tail)
		if err != nil {
			return err
		}
		chat.Histogram, chat.Count = trial.HistogramPath("chat"), count
		if m.AllocUS != nil {
			n, err := writeLog(trial.AllocHistogramPath("chat"), "victim chat allocation probe", m.AllocUS(t.Config, t.Neighbour), tail)
			if err != nil {
				return err
			}
			chat.AllocHistogram, chat.AllocCount = trial.AllocHistogramPath("chat"), n
		}
	}
	cgs := []string{trial.SessionPath("victim"), vcg}
	man := trial.Manifest{Version: trial.ManifestVer, Spec: sp, Kernel: "7.3.4", GuestCPUs: 2, Started: start, Finished: start.Add(5 * time.Second),
		Victims: []trial.WorkloadResult{chat}, OK: true}
	for _, n := range sp.Neighbours {
		cg := trial.StepPath(n.Session, n.Step)
		man.Neighbours = append(man.Neighbours, trial.WorkloadResult{Name: n.Name, Kind: n.Kind, Cgroup: cg, Count: 1})
		cgs = append(cgs, cg)
	}
	if len(sp.Neighbours) > 0 {
		cgs = append(cgs, trial.SessionPath("noisy"))
	}
	if sp.Scheduler != nil {
		man.Processes = append(man.Processes, trial.ProcessResult{Name: "scheduler", Binary: trial.SchedulerBinary, Started: true, Log: trial.SchedulerLog, SchedExt: "enabled", CPUMs: 120,
			StartupCPUMs: 90, SteadyCPUMs: 30, SteadyMs: 5000})
		if err := fsutil.WriteFile(filepath.Join(dir, trial.SchedulerLog), []byte("ok\n")); err != nil {
			return err
		}
	}
	if sp.Daemon != nil {
		man.Processes = append(man.Processes, trial.ProcessResult{Name: "daemon", Binary: trial.DaemonBinary, Started: true, Log: trial.DaemonLog, CPUMs: 80,
			StartupCPUMs: 60, SteadyCPUMs: 20, SteadyMs: 5000, SetupCPUMs: 15, MeasureCPUMs: 5, MeasureMs: 2500})
		if err := fsutil.WriteFile(filepath.Join(dir, trial.DaemonLog), []byte("ok\n")); err != nil {
			return err
		}
	}
	man.Cgroups = cgs
	high := m.HighEvents(t.Config, t.Neighbour)
	snap := func(at time.Time, after bool) trial.Snapshot {
		sn := trial.Snapshot{Time: at, Cgroups: map[string]map[string]string{}, System: map[string]string{
			"/proc/pressure/cpu":    psi(0, 0),
			"/proc/pressure/memory": psi(0, 0),
		}}
		for _, cg := range cgs {
			var h, major, throttled, some int64
			if after {
				major, some = 10, 100000
				if strings.Contains(cg, "noisy") {
					h, throttled, some = high, 5000, 400000+high*100
				}
			}
			sn.Cgroups[cg] = map[string]string{
				"memory.events":   fmt.Sprintf("low 0\nhigh %d\nmax 0\noom 0\noom_kill 0\n", h),
				"memory.stat":     fmt.Sprintf("anon 1\npgmajfault %d\npgscan %d\npgsteal %d\n", major, h*32, h*30),
				"cpu.stat":        fmt.Sprintf("usage_usec %d\nthrottled_usec %d\n", throttled*10, throttled),
				"memory.pressure": psi(some, some/2),
				"cpu.pressure":    psi(some/4, 0),
			}
		}
		if after {
			sn.System["/proc/pressure/memory"] = psi(high*100, high*50)
		}
		return sn
	}
	if err := fsutil.WriteJSON(filepath.Join(dir, trial.BeforeFile), snap(start, false)); err != nil {
		return err
	}
	if err := fsutil.WriteJSON(filepath.Join(dir, trial.AfterFile), snap(start.Add(5*time.Second), true)); err != nil {
		return err
	}
	var tl strings.Builder
	for ms := int64(0); ms <= 4000; ms += 100 {
		for _, cg := range cgs {
			cur := int64(8 << 20)
			var ev, thr, sys, limit int64
			if strings.Contains(cg, "noisy") {
				cur = (20 + ms/40) << 20
				ev = high * ms / 4000
				thr = 5000 * ms / 4000
				// 10 ms of system time per 100 ms sample; the scenario's
				// 96M memory.high is crossed at 3040 ms.
				sys, limit = ms*100, 96<<20
			}
			fmt.Fprintf(&tl, `{"t_ms":%d,"cgroup":%q,"memory_current":%d,"memory_high_events":%d,"throttled_usec":%d,"system_usec":%d,"memory_high":%d}`+"\n", ms, cg, cur, ev, thr, sys, limit)
		}
	}
	if err := fsutil.WriteFile(filepath.Join(dir, trial.TimelineFile), []byte(tl.String())); err != nil {
		return err
	}
	ev := FullEvidence(t, high)
	if m.Evidence != nil {
		ev = m.Evidence(t)
	}
	if err := fsutil.WriteJSON(filepath.Join(dir, trial.EvidenceFile), ev); err != nil {
		return err
	}
	if err := fsutil.WriteJSON(filepath.Join(dir, trial.ManifestFile), man); err != nil {
		return err
	}
	_, err := os.Stat(filepath.Join(dir, trial.ManifestFile))
	return err
}

func fnv64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// FullEvidence is what a trial's stack reports when every mechanism of its
// configuration engaged: policy entries for every step in the maps the
// scheduler read, boosts of the interactive victim, its memory protection
// by the daemon, daemon throttles of a pressured neighbour and, when
// coupled, its penalty.
func FullEvidence(t plan.Trial, high int64) trial.Evidence {
	sp := t.Spec
	st := sp.Stack
	ev := trial.Evidence{CgroupIDs: map[string]uint64{}}
	ids := uint64(100)
	classOf := map[string]uint32{trial.ClassInteractive: 1, trial.ClassToolBurst: 2, trial.ClassBackground: 3, "": 3, trial.ClassDefault: 3}
	if st.Policy != stack.PolicyNone {
		ev.PolicyMapID, ev.PressureMapID = 7, 8
		ev.Policies = map[string]trial.PolicyEntry{}
		ev.Pressure = map[string]trial.PressureEntry{}
	}
	if st.Scheduler != stack.SchedNone {
		ev.Scheduler = &trial.SchedulerEvidence{Mode: string(st.Scheduler), PolicyMapID: ev.PolicyMapID,
			PressureMapID: ev.PressureMapID, PenaltyScore: 20, Cgroups: map[string]trial.SchedulerCgroup{}}
		if st.Scheduler == stack.SchedPartial {
			ev.TaskPolicies = map[string]int{}
			for _, v := range sp.Victims {
				ev.TaskPolicies[v.Name] = 7
			}
			for _, n := range sp.Neighbours {
				ev.TaskPolicies[n.Name] = 7
			}
		}
	}
	if st.Daemon {
		ev.Daemon = &trial.DaemonEvidence{MemoryMode: string(st.Memory), CPUPolicy: st.DaemonCPU(), Transitions: map[string]map[string]int{}}
	}
	for _, se := range sp.Sessions {
		for _, s := range se.Steps {
			p := trial.StepPath(se.ID, s.ID)
			ids++
			ev.CgroupIDs[p] = ids
			if ev.Policies != nil {
				pe := trial.PolicyEntry{Class: classOf[s.Class], WeightMulQ8: 256}
				if s.Class == trial.ClassInteractive {
					pe.BoostCredit = 50e6
					if st.Daemon {
						pe.Flags |= 2 // the daemon's interactive profile protects it
					}
				}
				ev.Policies[p] = pe
			}
			noisy := se.ID == "noisy"
			if ev.Scheduler != nil {
				c := trial.SchedulerCgroup{Weight: 100, RuntimeNs: 1e9}
				if s.Class == trial.ClassInteractive {
					c.Boosts = 500
				}
				if st.Coupled && noisy && high > 0 {
					c.Penalties = 40
				}
				ev.Scheduler.Cgroups[p] = c
			}
			if st.Daemon && noisy && high > 0 {
				ev.Pressure[p] = trial.PressureEntry{ThrashScore: 0, TotalEvents: uint64(high), MaxScore: 35}
			}
			if ev.Daemon != nil {
				ev.Daemon.StepsCreated++
				if noisy && high > 0 {
					ev.Daemon.Transitions[p] = map[string]int{"THROTTLED": 2}
				}
			}
		}
	}
	if ev.Policies != nil && ev.Daemon == nil {
		ev.PolicyWrites = len(ev.Policies)
	}
	switch {
	case ev.Daemon == nil:
	case st.Memory == stack.MemFull:
		ev.Daemon.MemcgOps = map[string]uint64{"low_grants": 12}
	default:
		ev.Daemon.Protection = map[string]uint64{"granted": 1, "charged_ms": 400}
	}
	return ev
}

func psi(someUS, fullUS int64) string {
	return fmt.Sprintf("some avg10=0.00 avg60=0.00 avg300=0.00 total=%d\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=%d\n", someUS, fullUS)
}

// Analyzed writes a run of reps repetitions from m under a test's
// temporary directory and analyses it, failing the test on any error.
func Analyzed(t testing.TB, reps int, m Model) *analysis.Summary {
	t.Helper()
	dir, err := WriteRun(t.TempDir(), reps, m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := analysis.Analyze(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
