package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"

	"github.com/agentcgroup/agentcgroup/bpf/mempressure"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/config"
	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// sharedMaps are the pinned step_policy and step_pressure maps every part
// of the stack uses.
type sharedMaps struct {
	dir              string
	policy, pressure *ebpf.Map
}

func (m *sharedMaps) close() {
	if m == nil {
		return
	}
	if m.policy != nil {
		m.policy.Close()
	}
	if m.pressure != nil {
		m.pressure.Close()
	}
}

// openSharedMaps opens the pinned maps in dir, creating them when create is
// set (a static policy source has no daemon to create them).
func openSharedMaps(dir string, create bool) (*sharedMaps, error) {
	m := &sharedMaps{dir: dir}
	if create {
		policySpec, pressureSpec, err := mempressure.MapSpecs()
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("pin directory %s: %w", dir, err)
		}
		for _, x := range []struct {
			spec *ebpf.MapSpec
			dst  **ebpf.Map
		}{{policySpec, &m.policy}, {pressureSpec, &m.pressure}} {
			// A fresh map per trial: nothing from an earlier run may
			// carry policy into this one.
			_ = os.Remove(filepath.Join(dir, x.spec.Name))
			x.spec.Pinning = ebpf.PinByName
			mp, err := ebpf.NewMapWithOptions(x.spec, ebpf.MapOptions{PinPath: dir})
			if err != nil {
				m.close()
				return nil, fmt.Errorf("create pinned map %s/%s: %w", dir, x.spec.Name, err)
			}
			*x.dst = mp
		}
		return m, nil
	}
	var err error
	if m.policy, err = ebpf.LoadPinnedMap(filepath.Join(dir, "step_policy"), nil); err != nil {
		return nil, fmt.Errorf("open the pinned step_policy in %s: %w", dir, err)
	}
	if m.pressure, err = ebpf.LoadPinnedMap(filepath.Join(dir, "step_pressure"), nil); err != nil {
		m.close()
		return nil, fmt.Errorf("open the pinned step_pressure in %s: %w", dir, err)
	}
	return m, nil
}

// startStack starts what the trial's configuration runs, in the order the
// sharing needs: the owner of the pinned maps first (the daemon, or the
// runner itself for a static policy), then the scheduler on those maps.
func (t *trialRun) startStack(ctx context.Context) bool {
	s := t.spec
	st := s.Stack
	if st.Daemon && t.missingHelper("daemon", trial.DaemonBinary, s.Daemon, trial.DaemonLog) {
		return false
	}
	if st.Scheduler != stack.SchedNone && t.missingHelper("scheduler", trial.SchedulerBinary, s.Scheduler, trial.SchedulerLog) {
		return false
	}
	if st.Policy != stack.PolicyNone {
		pol, err := config.Parse("policy.toml", []byte(s.Policy))
		if err != nil {
			t.errorf("policy: %v", err)
			return false
		}
		t.policy = pol
	}
	policyPath := filepath.Join(t.tmp, trial.LogsDir, "policy.toml")
	if t.policy != nil {
		if err := os.WriteFile(policyPath, []byte(s.Policy), 0o644); err != nil {
			t.errorf("policy: %v", err)
			return false
		}
	}
	if st.Policy == stack.PolicyStatic {
		m, err := openSharedMaps(t.policy.Daemon.PinDir, true)
		if err != nil {
			t.errorf("static policy: %v", err)
			return false
		}
		t.maps = m
	}
	if st.Daemon {
		args := append([]string{"--config", policyPath}, st.DaemonArgs()...)
		if h := t.startHelper(ctx, "daemon", trial.DaemonBinary, s.Daemon, args, trial.DaemonLog); h == nil {
			return false
		}
		t.daemon = api.NewClient(t.daemonSocket())
		m, err := openSharedMaps(t.policy.Daemon.PinDir, false)
		if err != nil {
			t.errorf("daemon: %v", err)
			return false
		}
		t.maps = m
	}
	if st.Scheduler != stack.SchedNone {
		pinDir := ""
		if t.maps != nil {
			pinDir = t.maps.dir
		}
		// No periodic stats: the trial asks for one report (SIGUSR1) at
		// the end of the measured phase, so the loader stays idle.
		args := append(st.SchedulerArgs(pinDir), "-interval", "0", "-stats-file", filepath.Join(t.tmp, trial.SchedulerStatsFile))
		if h := t.startHelper(ctx, "scheduler", trial.SchedulerBinary, s.Scheduler, args, trial.SchedulerLog); h == nil {
			return false
		}
	}
	return true
}

// writeStaticPolicy writes a step's step_policy entry from the profile its
// class selects: the static policy source of cpu-only, the same value the
// daemon would write, written once.
func (t *trialRun) writeStaticPolicy(session, class string, id uint64) error {
	if err := putStaticPolicy(t.policy, t.maps.policy, class, id); err != nil {
		return err
	}
	t.ev.PolicyWrites++
	return nil
}

func putStaticPolicy(pol *config.Config, m *ebpf.Map, class string, id uint64) error {
	_, prof, err := pol.Select(DaemonClass(class), nil, nil)
	if err != nil {
		return err
	}
	pv := prof.StepPolicy(DaemonClass(class))
	if err := m.Put(id, &pv); err != nil {
		return fmt.Errorf("write step_policy for cgroup %d: %w", id, err)
	}
	return nil
}

// staticPolicy lets a workload process (a session-shaped victim making its
// own steps) write step policy for the cgroups it creates.
type staticPolicy struct {
	pol  *config.Config
	maps *sharedMaps
}

func openStaticPolicy(policy string) (*staticPolicy, error) {
	pol, err := config.Parse("policy.toml", []byte(policy))
	if err != nil {
		return nil, err
	}
	m, err := openSharedMaps(pol.Daemon.PinDir, false)
	if err != nil {
		return nil, err
	}
	return &staticPolicy{pol: pol, maps: m}, nil
}

func (s *staticPolicy) close() { s.maps.close() }

func (s *staticPolicy) write(cg cgroupfs.Cgroup, class string) error {
	id, err := cg.ID()
	if err != nil {
		return err
	}
	return putStaticPolicy(s.pol, s.maps.policy, class, id)
}

// staticBudget is the part of a scenario budget this configuration takes
// as given: resources its policy manages are left to the policy (the
// daemon's profiles, or the scheduler's step policy), so nothing silently
// overwrites what the policy decided.
func staticBudget(st stack.Config, b trial.Budget) trial.Budget {
	if st.ManagesCPU() {
		b.CPUWeight, b.CPUMax = 0, ""
	}
	if st.ManagesMemory() {
		b.MemoryHigh, b.MemoryMax = 0, 0
	}
	return b
}
