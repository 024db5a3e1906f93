package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/workloads/kinds"
)

// DaemonClass maps a spec class to one the daemon accepts.
func DaemonClass(c string) string {
	if c == "" || c == trial.ClassDefault {
		return trial.ClassBackground
	}
	return c
}

// buildTree creates every session and step with its budget, with cpu,
// memory and pids enabled down to the steps (the scheduler sees a task's
// cgroup through the cpu controller, so it must reach the leaves).
//
// With a daemon, sessions and steps are created through its API (it
// refuses to adopt a step it did not create with a class). Of the spec's
// budgets only what the configuration does not manage is written (see
// staticBudget): pids always, CPU without a scheduler, memory without the
// daemon. With a static policy source each step's step_policy entry is
// written here, once.
func (t *trialRun) buildTree() error {
	if _, err := cgroupfs.Mkdir(t.root.Path); err != nil {
		return err
	}
	ctrls := []string{"cpu", "memory", "pids"}
	for _, se := range t.spec.Sessions {
		if t.daemon != nil {
			if _, err := t.daemon.StartSession(api.SessionRequest{ID: se.ID}); err != nil {
				return fmt.Errorf("daemon: start session %s: %w", se.ID, err)
			}
		}
		sc, err := cgroupfs.Mkdir(filepath.Join(t.opt.Mount, trial.SessionPath(se.ID)))
		if err != nil {
			return err
		}
		if err := cgroupfs.EnableControllers(t.opt.Mount, trial.SessionPath(se.ID), ctrls...); err != nil {
			return err
		}
		if err := ApplyBudget(sc, staticBudget(t.spec.Stack, se.Budget)); err != nil {
			return err
		}
		t.m.Cgroups = append(t.m.Cgroups, trial.SessionPath(se.ID))
		for _, st := range se.Steps {
			if t.daemon != nil {
				if _, err := t.daemon.CreateStep(api.StepRequest{Session: se.ID, Step: st.ID, Class: DaemonClass(st.Class)}); err != nil {
					return fmt.Errorf("daemon: create step %s/%s: %w", se.ID, st.ID, err)
				}
			}
			cg, err := cgroupfs.Mkdir(filepath.Join(t.opt.Mount, trial.StepPath(se.ID, st.ID)))
			if err != nil {
				return err
			}
			if err := ApplyBudget(cg, staticBudget(t.spec.Stack, st.Budget)); err != nil {
				return err
			}
			if err := t.noteStep(se.ID, st.ID, st.Class, cg); err != nil {
				return err
			}
			t.m.Cgroups = append(t.m.Cgroups, trial.StepPath(se.ID, st.ID))
		}
	}
	for _, v := range t.spec.Victims {
		if !kinds.SessionShaped(v.Kind) {
			continue
		}
		rel := trial.StepPath(v.Session, TraceDriverStep(v.Name))
		if t.daemon != nil {
			if _, err := t.daemon.CreateStep(api.StepRequest{Session: v.Session, Step: TraceDriverStep(v.Name), Class: trial.ClassBackground}); err != nil {
				return fmt.Errorf("daemon: create step %s: %w", rel, err)
			}
		}
		cg, err := cgroupfs.Mkdir(filepath.Join(t.opt.Mount, rel))
		if err != nil {
			return err
		}
		if err := t.noteStep(v.Session, TraceDriverStep(v.Name), trial.ClassBackground, cg); err != nil {
			return err
		}
		t.m.Cgroups = append(t.m.Cgroups, rel)
	}
	t.m.Cgroups = append([]string{trial.CgroupRoot}, t.m.Cgroups...)
	return nil
}

// noteStep records a step's cgroup id and, with a static policy source,
// writes its step policy.
func (t *trialRun) noteStep(session, step, class string, cg cgroupfs.Cgroup) error {
	id, err := cg.ID()
	if err != nil {
		return err
	}
	if t.ev.CgroupIDs == nil {
		t.ev.CgroupIDs = map[string]uint64{}
	}
	t.ev.CgroupIDs[trial.StepPath(session, step)] = id
	if t.spec.Stack.Policy == stack.PolicyStatic {
		return t.writeStaticPolicy(session, class, id)
	}
	return nil
}

// sampledCgroups are the timeline's rows: every session and step.
func (t *trialRun) sampledCgroups() []string {
	var out []string
	for _, c := range t.m.Cgroups {
		if c != trial.CgroupRoot {
			out = append(out, c)
		}
	}
	return out
}

// snapshot reads every cgroup under the tree (including the steps that
// session-shaped victims made during the run) plus the root and
// system-wide files.
func (t *trialRun) snapshot() trial.Snapshot {
	s := trial.Snapshot{Time: time.Now(), Cgroups: map[string]map[string]string{}, System: map[string]string{}}
	var walk func(rel string)
	walk = func(rel string) {
		cg := cgroupfs.Cgroup{Path: filepath.Join(t.opt.Mount, rel)}
		files := map[string]string{}
		for _, f := range trial.SnapshotFiles {
			if b, err := os.ReadFile(filepath.Join(cg.Path, f)); err == nil {
				files[f] = string(b)
			}
		}
		s.Cgroups[rel] = files
		kids, _ := cg.Children()
		for _, k := range kids {
			walk(filepath.Join(rel, k))
		}
	}
	if t.root.Exists() {
		walk(trial.CgroupRoot)
	}
	root := map[string]string{}
	for _, f := range trial.SnapshotFiles {
		if b, err := os.ReadFile(filepath.Join(t.opt.Mount, f)); err == nil {
			root[f] = string(b)
		}
	}
	s.Cgroups[""] = root
	for _, f := range trial.SnapshotSystemFiles {
		if b, err := os.ReadFile(f); err == nil {
			s.System[f] = string(b)
		}
	}
	return s
}

func (t *trialRun) schedExtState() string {
	b, err := os.ReadFile("/sys/kernel/sched_ext/state")
	if err != nil {
		return "unavailable: " + err.Error()
	}
	return strings.TrimSpace(string(b))
}
