package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/agentcgroup/agentcgroup/bpf/mempressure"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/config"
	"github.com/agentcgroup/agentcgroup/daemon/escalate"
	"github.com/agentcgroup/agentcgroup/daemon/eventlog"
	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// savedState is what cgroupfs cannot tell a restarted daemon: session labels
// and each step's class, command and escalation history. cgroupfs stays the
// truth for which sessions and steps exist.
type savedState struct {
	Sessions []*session  `json:"sessions"`
	Steps    []savedStep `json:"steps"`
}

type savedStep struct {
	Session string   `json:"session"`
	Step    string   `json:"step"`
	Class   string   `json:"class"`
	Argv    []string `json:"argv,omitempty"`
	State   string   `json:"state"`
	Freezes int      `json:"freezes"`
}

func (d *Daemon) statePath() string { return filepath.Join(d.cfg.Daemon.StateDir, "state.json") }

func (d *Daemon) saveState() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.saveStateLocked()
}

// saveStateLocked writes state.json atomically; d.mu is held.
func (d *Daemon) saveStateLocked() {
	var st savedState
	for _, s := range d.sessions {
		st.Sessions = append(st.Sessions, s)
	}
	sort.Slice(st.Sessions, func(i, j int) bool { return st.Sessions[i].ID < st.Sessions[j].ID })
	for _, s := range d.steps {
		s.mu.Lock()
		st.Steps = append(st.Steps, savedStep{Session: s.sid, Step: s.tid, Class: s.class, Argv: s.argv, State: s.m.State.String(), Freezes: s.m.Freezes})
		s.mu.Unlock()
	}
	sort.Slice(st.Steps, func(i, j int) bool {
		return key(st.Steps[i].Session, st.Steps[i].Step) < key(st.Steps[j].Session, st.Steps[j].Step)
	})
	b, _ := json.MarshalIndent(st, "", " ")
	dir := d.cfg.Daemon.StateDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		d.log.Emit(eventlog.Event{Kind: "error", Error: fmt.Sprintf("state directory %s: %v", dir, err)})
		return
	}
	if err := fsutil.WriteFile(d.statePath(), b); err != nil {
		d.log.Emit(eventlog.Event{Kind: "error", Error: fmt.Sprintf("saving state: %v", err)})
	}
}

// adopt rebuilds the daemon's view from cgroupfs, the pinned maps and
// state.json, without killing anything. Steps whose processes ended while
// no daemon was running are removed.
func (d *Daemon) adopt() error {
	var st savedState
	if b, err := os.ReadFile(d.statePath()); err == nil {
		if err := json.Unmarshal(b, &st); err != nil {
			d.log.Emit(eventlog.Event{Kind: "error", Error: fmt.Sprintf("ignoring unreadable %s: %v", d.statePath(), err)})
			st = savedState{}
		}
	}
	labels := map[string]*session{}
	for _, s := range st.Sessions {
		labels[s.ID] = s
	}
	saved := map[string]savedStep{}
	for _, s := range st.Steps {
		saved[key(s.Session, s.Step)] = s
	}
	sids, refs, err := d.tree.Scan()
	if err != nil {
		return err
	}
	d.mu.Lock()
	for _, sid := range sids {
		s := labels[sid]
		if s == nil {
			s = &session{ID: sid}
		}
		d.sessions[sid] = s
	}
	d.mu.Unlock()
	classOf := map[uint32]string{}
	for n, v := range config.Classes {
		classOf[v] = n
	}
	var toRemove []*step
	for _, r := range refs {
		id, err := r.Cgroup.ID()
		if err != nil {
			continue
		}
		sv, known := saved[key(r.Session, r.Step)]
		class := sv.Class
		if !known {
			var pv mempressure.StepPolicy
			if d.policyMap.Lookup(id, &pv) == nil {
				class = classOf[pv.Class]
			}
			if class == "" {
				class = "background"
			}
		}
		profName, prof, err := d.cfg.Select(class, d.sessions[r.Session].Labels, sv.Argv)
		if err != nil {
			d.log.Emit(eventlog.Event{Kind: "error", Session: r.Session, Step: r.Step, Error: "adopt: " + err.Error()})
			continue
		}
		state := escalate.Running
		if fz, _ := r.Cgroup.Read("cgroup.freeze"); fz == "1" {
			state = escalate.SoftPaused
		} else if ps, ok := escalate.ParseState(sv.State); ok && ps == escalate.Throttled {
			state = ps
		}
		now := mono()
		s := d.newStep(r.Session, r.Step, r.Cgroup, id, class, profName, prof, sv.Argv, escalate.Restore(prof.Escalation, state, sv.Freezes, now))
		ev, _ := r.Cgroup.Events()
		s.everPopulated = ev.Populated
		if !ev.Populated {
			s.done = closedChan()
			toRemove = append(toRemove, s)
			continue
		}
		var pv mempressure.StepPolicy
		if d.policyMap.Lookup(id, &pv) != nil {
			pv = policyValue(class, prof, d.cfg.Daemon.MonitorOnly)
			_ = d.policyMap.Put(id, &pv)
		}
		if err := d.watch.add(s); err != nil {
			d.log.Emit(eventlog.Event{Kind: "error", Session: r.Session, Step: r.Step, Error: "adopt: " + err.Error()})
		}
		d.mu.Lock()
		d.steps[key(s.sid, s.tid)] = s
		d.mu.Unlock()
		d.startStep(s)
		// Its processes may have exited between the look above and the
		// watch: look once now, as nothing else may wake it.
		s.kick("adopted")
		d.log.Emit(eventlog.Event{Kind: "step_adopted", Session: s.sid, Step: s.tid, CgroupID: id, To: state.String(),
			Detail: fmt.Sprintf("class=%s profile=%s known=%v", class, profName, known)})
	}
	for _, s := range toRemove {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := s.cg.RemoveAll(ctx, false)
		cancel()
		_ = d.policyMap.Delete(s.id)
		_ = d.pressureMap.Delete(s.id)
		e := eventlog.Event{Kind: "step_removed", Session: s.sid, Step: s.tid, CgroupID: s.id, Cause: "empty when the daemon started"}
		if err != nil {
			e.Error = err.Error()
		}
		d.log.Emit(e)
	}
	d.saveState()
	return nil
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

// ensureSessionCgroup creates a session's cgroup with controllers for its steps.
func (d *Daemon) ensureSessionCgroup(sid string) (cgroupfs.Cgroup, error) {
	cg, err := d.tree.Session(sid)
	if err != nil {
		return cg, err
	}
	if _, err := cgroupfs.Mkdir(cg.Path); err != nil {
		return cg, err
	}
	if err := cgroupfs.EnableControllers(d.cfg.Daemon.CgroupMount, filepath.Join(d.cfg.Daemon.Base, filepath.Base(cg.Path)), Controllers...); err != nil {
		_ = cg.Remove()
		return cg, err
	}
	return cg, nil
}
