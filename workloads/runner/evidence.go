package runner

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/agentcgroup/agentcgroup/bpf/flatcg"
	"github.com/agentcgroup/agentcgroup/bpf/mempressure"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// pressureWatch records the highest fresh thrash score of every cgroup in
// the shared step_pressure map while the trial runs: the map only holds
// the latest value, and whether a penalty should have fired depends on the
// peak.
type pressureWatch struct {
	mu   sync.Mutex
	max  map[uint64]uint32
	stop chan struct{}
	done chan struct{}
}

func (t *trialRun) watchPressure(every time.Duration) *pressureWatch {
	w := &pressureWatch{max: map[uint64]uint32{}, stop: make(chan struct{}), done: make(chan struct{})}
	if t.maps == nil {
		close(w.done)
		return w
	}
	go func() {
		defer close(w.done)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			var id uint64
			var sp mempressure.StepPressure
			it := t.maps.pressure.Iterate()
			now := mempressure.Now()
			w.mu.Lock()
			for it.Next(&id, &sp) {
				if sc := mempressure.Score(sp, now); sc > w.max[id] {
					w.max[id] = sc
				}
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-tk.C:
			}
		}
	}()
	return w
}

func (w *pressureWatch) peaks() map[uint64]uint32 {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.max
}

// collectEvidence reads what the stack reports about itself at the end of
// the measured phase and writes trial.EvidenceFile.
func (t *trialRun) collectEvidence(ws []*workload, pw *pressureWatch) {
	ev := &t.ev
	st := t.spec.Stack
	// Every cgroup under the tree, including steps made during the run.
	paths := map[uint64]string{}
	var walk func(rel string)
	walk = func(rel string) {
		cg := cgroupfs.Cgroup{Path: filepath.Join(t.opt.Mount, rel)}
		if id, err := cg.ID(); err == nil {
			paths[id] = rel
			if rel != trial.CgroupRoot {
				if ev.CgroupIDs == nil {
					ev.CgroupIDs = map[string]uint64{}
				}
				ev.CgroupIDs[rel] = id
			}
		}
		kids, _ := cg.Children()
		for _, k := range kids {
			walk(filepath.Join(rel, k))
		}
	}
	walk(trial.CgroupRoot)
	fail := func(what string, err error) {
		ev.Errors = append(ev.Errors, what+": "+err.Error())
	}

	peaks := pw.peaks()
	if t.maps != nil {
		var err error
		if ev.PolicyMapID, err = flatcg.MapID(t.maps.policy); err != nil {
			fail("policy map", err)
		}
		if ev.PressureMapID, err = flatcg.MapID(t.maps.pressure); err != nil {
			fail("pressure map", err)
		}
		ev.Policies = map[string]trial.PolicyEntry{}
		ev.Pressure = map[string]trial.PressureEntry{}
		for id, rel := range paths {
			var pv mempressure.StepPolicy
			if err := t.maps.policy.Lookup(id, &pv); err == nil {
				ev.Policies[rel] = trial.PolicyEntry{Class: pv.Class, Flags: pv.Flags, WeightMulQ8: pv.WeightMulQ8, PenaltyScore: pv.PenaltyScore,
					SliceNs: pv.SliceNs, BoostCredit: pv.CpuBurstCreditNs}
			}
			var sp mempressure.StepPressure
			if err := t.maps.pressure.Lookup(id, &sp); err == nil || peaks[id] > 0 {
				ev.Pressure[rel] = trial.PressureEntry{ThrashScore: mempressure.Score(sp, mempressure.Now()),
					TotalEvents: sp.TotalEvents, TotalDelayNs: sp.TotalDelayNs, MaxScore: peaks[id]}
			}
		}
	}

	if st.Scheduler != stack.SchedNone {
		if r, err := t.schedulerReport(); err != nil {
			fail("scheduler report", err)
		} else {
			se := &trial.SchedulerEvidence{Mode: r.Mode, PolicyMapID: r.PolicyMapID, PressureMapID: r.PressureMapID, PenaltyScore: r.PenaltyScore,
				Cgroups: map[string]trial.SchedulerCgroup{}, ChargeCapped: r.Counters.ChargeCapped,
				PolicyLookups: r.Counters.PolicyLookups, PolicyHits: r.Counters.PolicyHits}
			for _, c := range r.Cgroups {
				rel, ok := paths[c.ID]
				if !ok {
					continue // outside the agent tree
				}
				se.Cgroups[rel] = trial.SchedulerCgroup{Weight: c.Weight, RuntimeNs: c.RuntimeNs, Boosts: c.Boosts,
					Penalties: c.Penalties, PenalizedNs: c.PenalizedNs, ThrottledNs: c.ThrottledNs}
			}
			ev.Scheduler = se
		}
		if st.Scheduler == stack.SchedPartial {
			ev.TaskPolicies = map[string]int{}
			for _, w := range ws {
				if w.cmd == nil || w.cmd.Process == nil {
					continue
				}
				if pol, err := flatcg.TaskPolicy(w.cmd.Process.Pid); err == nil {
					ev.TaskPolicies[w.name] = pol
				}
			}
		}
	}

	if st.Daemon {
		de := &trial.DaemonEvidence{}
		if t.daemon != nil {
			if s, err := t.daemon.Status(); err != nil {
				fail("daemon status", err)
			} else {
				de.MemoryMode, de.Probe = s.MemoryMode, s.Probe
				de.CPUPolicy = s.CPUPolicy
				if o := s.MemcgOps; o != nil {
					de.MemcgOps = map[string]uint64{"delay_calls": o.DelayCalls, "delay_policy": o.DelayPolicy,
						"delay_nonzero": o.DelayNonzero, "delay_credit": o.DelayCredit, "delay_ms_sum": o.DelayMsSum,
						"low_grants": o.LowGrants, "min_grants": o.MinGrants, "revoked": o.Revoked}
				}
				if p := s.Protection; p != nil {
					de.Protection = map[string]uint64{"granted": p.Granted, "charged_ms": p.ChargedMs, "low_bytes": p.LowBytes,
						"revoked_budget": p.RevokedBudget, "revoked_max": p.RevokedMax, "revoked_oom": p.RevokedOOM}
				}
				if g := s.NodeGuard; g != nil {
					de.NodeGuard = map[string]uint64{"floor_bytes": g.FloorBytes, "min_available_bytes": g.MinAvailableBytes,
						"looks": g.Looks, "kills": g.Kills}
				}
			}
		}
		if err := readDaemonEvents(filepath.Join(t.tmp, trial.DaemonLog), de); err != nil {
			fail("daemon event log", err)
		}
		ev.Daemon = de
	}
	if err := fsutil.WriteJSON(filepath.Join(t.tmp, trial.EvidenceFile), ev); err != nil {
		t.errorf("evidence: %v", err)
	}
}

// schedulerReport asks the running scheduler for its report (SIGUSR1) and
// reads it once written.
func (t *trialRun) schedulerReport() (flatcg.Report, error) {
	var r flatcg.Report
	path := filepath.Join(t.tmp, trial.SchedulerStatsFile)
	for _, h := range t.procs {
		if h.res.Name == "scheduler" && h.cmd != nil && h.cmd.Process != nil {
			_ = os.Remove(path)
			if err := h.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
				return r, err
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			return r, json.Unmarshal(b, &r)
		}
		if time.Now().After(deadline) {
			return r, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// daemonEvent is the part of an agentcgroupd event-log line the evidence
// needs.
type daemonEvent struct {
	Kind      string `json:"event"`
	Session   string `json:"session"`
	Step      string `json:"step"`
	To        string `json:"to"`
	Action    string `json:"action"`
	Cause     string `json:"cause"`
	KillCause string `json:"kill_cause"`
	DryRun    bool   `json:"dry_run"`
}

// readDaemonEvents counts the daemon's actions from its event log (JSON
// lines among its other output).
func readDaemonEvents(path string, de *trial.DaemonEvidence) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e daemonEvent
		if json.Unmarshal([]byte(line), &e) != nil || e.DryRun {
			continue
		}
		rel := trial.StepPath(e.Session, e.Step)
		switch e.Kind {
		case "step_created":
			de.StepsCreated++
		case "burst_start":
			if de.Bursts == nil {
				de.Bursts = map[string]int{}
			}
			de.Bursts[rel]++
		case "transition":
			if de.Transitions == nil {
				de.Transitions = map[string]map[string]int{}
			}
			if de.Transitions[rel] == nil {
				de.Transitions[rel] = map[string]int{}
			}
			to := e.To
			if e.Action == "thaw" {
				to = "thaw"
			}
			de.Transitions[rel][to]++
			if e.Action == "kill" {
				cause := e.KillCause
				if cause == "" {
					cause = "unspecified"
				}
				de.Kills = append(de.Kills, trial.DaemonKill{Cgroup: rel, Cause: cause, Detail: e.Cause})
			}
		}
	}
	return sc.Err()
}
