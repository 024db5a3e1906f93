package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentcgroup/agentcgroup/bpf/mempressure"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/config"
	"github.com/agentcgroup/agentcgroup/daemon/escalate"
	"github.com/agentcgroup/agentcgroup/daemon/eventlog"
)

// step is one live step and its controller goroutine.
type step struct {
	d        *Daemon
	sid, tid string
	cg       cgroupfs.Cgroup
	id       uint64

	mu                       sync.Mutex
	class                    string
	profName                 string
	prof                     *config.Profile
	argv                     []string
	m                        *escalate.Machine
	events                   map[string]uint64 // memory.events at the last look
	score                    uint32
	populated, everPopulated bool

	burstOn, burstUsed bool
	burstUntil         time.Duration

	psiFired atomic.Bool
	psiAvg10 atomic.Uint64 // float64 bits, refreshed by the watcher
	wake     chan wakeup   // why the controller should look now
	// memory.events and cgroup.events, open while the controller runs
	// (its goroutine alone reads them).
	memEvents, cgEvents *knob
	stop                chan struct{}
	stopOnce            sync.Once
	done                chan struct{}

	removeOnce sync.Once
	removeErr  error
	removed    chan struct{} // closed once the step is removed
}

func key(sid, tid string) string { return sid + "/" + tid }

// wakeup is a reason to evaluate a step now and when it arrived.
type wakeup struct {
	why string
	at  uint64 // CLOCK_MONOTONIC ns when the daemon received the signal
}

func (s *step) kick(why string) { s.kickAt(why, eventlog.Mono()) }

// kickAt wakes the controller for a signal received at at. A wakeup
// already waiting absorbs it: one evaluation reads every input anyway.
func (s *step) kickAt(why string, at uint64) {
	select {
	case s.wake <- wakeup{why, at}:
	default:
	}
}

// httpError carries the status an API handler should answer with.
type httpError struct {
	code int
	err  error
}

func (e *httpError) Error() string { return e.err.Error() }

func errf(code int, format string, args ...any) error {
	return &httpError{code: code, err: fmt.Errorf(format, args...)}
}

func newStepID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// policyValue turns a profile into the step_policy entry the scheduler and
// the probe read.
func policyValue(class string, p *config.Profile, monitor bool) mempressure.StepPolicy {
	if monitor {
		// Registered (so the probe tracks the step) but without policy.
		return mempressure.StepPolicy{Class: 0}
	}
	return p.StepPolicy(class)
}

func limit(b config.ByteSize) uint64 {
	if b == 0 || b == config.Unlimited {
		return cgroupfs.Max
	}
	return uint64(b)
}

// applyKnobs writes the profile's cgroup knobs. With the scheduler running
// CPU weight goes through step_policy instead of cpu.weight, so the
// multiplier is not applied twice.
func (d *Daemon) applyKnobs(cg cgroupfs.Cgroup, p *config.Profile, withWeight bool) error {
	if err := cg.WriteLimit("memory.max", limit(p.Memory.Max)); err != nil {
		return err
	}
	if err := cg.WriteLimit("memory.high", limit(p.Memory.High)); err != nil {
		return err
	}
	oom := "0"
	if p.Memory.OOMGroup {
		oom = "1"
	}
	if err := cg.Write("memory.oom.group", oom); err != nil {
		return err
	}
	if withWeight && p.CPU.WeightMul > 0 {
		w := int(math.Round(100 * p.CPU.WeightMul))
		w = min(max(w, 1), 10000)
		if err := cg.Write("cpu.weight", strconv.Itoa(w)); err != nil {
			return err
		}
	}
	return nil
}

// createStep makes the step cgroup with its policy applied. On any failure
// it removes what it made, so bad input leaves nothing behind.
func (d *Daemon) createStep(req api.StepRequest) (*step, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cfg := d.cfg
	if err := cgroupfs.ValidateID("session", req.Session); err != nil {
		return nil, errf(http.StatusBadRequest, "%v", err)
	}
	sess, ok := d.sessions[req.Session]
	if !ok {
		return nil, errf(http.StatusNotFound, "session %q does not exist; start it first with `agentcgroup session start %s`", req.Session, req.Session)
	}
	if _, ok := config.Classes[req.Class]; !ok {
		return nil, errf(http.StatusBadRequest, "unknown class %q; use one of %s", req.Class, config.ClassNames())
	}
	profName, prof, err := cfg.Select(req.Class, sess.Labels, req.Argv)
	if err != nil {
		return nil, errf(http.StatusBadRequest, "%v", err)
	}
	tid := req.Step
	if tid == "" {
		for tid = newStepID(); d.steps[key(req.Session, tid)] != nil; tid = newStepID() {
		}
	}
	cg, err := d.tree.Step(req.Session, tid)
	if err != nil {
		return nil, errf(http.StatusBadRequest, "%v", err)
	}
	if d.steps[key(req.Session, tid)] != nil || cg.Exists() {
		return nil, errf(http.StatusConflict, "step %q already exists in session %q; pick another --step id", tid, req.Session)
	}
	if _, err := cgroupfs.Mkdir(cg.Path); err != nil {
		return nil, err
	}
	fail := func(err error) (*step, error) {
		_ = cg.Remove()
		return nil, err
	}
	id, err := cg.ID()
	if err != nil {
		return fail(err)
	}
	mon := cfg.Daemon.MonitorOnly
	if !mon {
		if err := d.applyKnobs(cg, prof, d.cpuPolicyLocked() == config.CPUCgroup); err != nil {
			return fail(fmt.Errorf("apply profile %q: %w", profName, err))
		}
	}
	pv := policyValue(req.Class, prof, mon)
	if err := d.policyMap.Put(id, &pv); err != nil {
		return fail(fmt.Errorf("register step in step_policy: %w", err))
	}
	s := d.newStep(req.Session, tid, cg, id, req.Class, profName, prof, req.Argv, escalate.New(prof.Escalation, mono()))
	if err := d.watch.add(s); err != nil {
		_ = d.policyMap.Delete(id)
		return fail(err)
	}
	d.steps[key(s.sid, s.tid)] = s
	d.startStep(s)
	d.saveStateLocked()
	d.log.Emit(eventlog.Event{Kind: "step_created", Session: s.sid, Step: s.tid, CgroupID: id,
		Detail: fmt.Sprintf("class=%s profile=%s monitor_only=%v", req.Class, profName, mon)})
	return s, nil
}

func (d *Daemon) newStep(sid, tid string, cg cgroupfs.Cgroup, id uint64, class, profName string, prof *config.Profile, argv []string, m *escalate.Machine) *step {
	return &step{d: d, sid: sid, tid: tid, cg: cg, id: id, class: class, profName: profName, prof: prof, argv: argv, m: m,
		wake: make(chan wakeup, 1), stop: make(chan struct{}), done: make(chan struct{}),
		removed: make(chan struct{})}
}

func (d *Daemon) startStep(s *step) {
	s.memEvents = openKnob(filepath.Join(s.cg.Path, "memory.events"))
	s.cgEvents = openKnob(filepath.Join(s.cg.Path, "cgroup.events"))
	if ev, err := s.memEvents.flatKeyed(); err == nil {
		s.events = ev
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer close(s.done)
		defer s.cgEvents.close()
		defer s.memEvents.close()
		s.loop()
	}()
	d.protect.kick()
	d.guard.kick()
}

func mono() time.Duration { return time.Duration(eventlog.Mono()) }

// loop evaluates the step when the kernel or the probe signals it, and
// at the times its pending transitions could fire (see schedule): a step
// with nothing pending sleeps until the kernel reports something.
func (s *step) loop() {
	defer s.d.ticker.set(s, 0, false)
	s.schedule()
	for {
		var w wakeup
		select {
		case <-s.stop:
			return
		case <-s.d.ctx.Done():
			return
		case w = <-s.wake:
		}
		if gone := s.evaluate(w); gone {
			return
		}
		s.schedule()
	}
}

// schedule asks the daemon's ticker for the step's next look, or for none,
// and sets what the watcher listens to for it. The state machine says when
// a time-based transition could next fire (escalate.Machine.NextLook:
// clear_after, freeze_after, thaw_after); a burst credit's end is another
// such time. Only a RUNNING step keeps its memory.events watch, which a
// throttled step's kernel would fire up to a hundred times a second: the
// timed looks read memory.events anyway. Without inotify, and for a
// RUNNING step whose watch could not be set, every tick is a look.
func (s *step) schedule() {
	now, tick := mono(), s.d.tick()
	s.mu.Lock()
	st, p := s.m.State, s.m.P
	at, timed := s.m.NextLook(now, tick)
	burstOn, until := s.burstOn, s.burstUntil
	s.mu.Unlock()
	running := st == escalate.Running
	watched, added := s.d.watch.setMemoryEvents(s, running)
	if s.d.watch.polling() || (running && !watched) {
		at, timed = now+tick, true
	}
	if burstOn && (!timed || until < at) {
		at, timed = max(until, now), true
	}
	s.d.watch.setAvgUser(s, usesOthersPSI(st, p))
	s.d.ticker.set(s, at, timed)
	if added {
		// Events between the last read and the new watch raised no
		// notification: look once more now.
		s.kick("memory.events watch added")
	}
}

// usesOthersPSI reports whether a step in state st decides on other steps'
// memory.pressure avg10 (others_psi_some_avg10): at a freeze or kill
// decision in THROTTLED, or at a thaw.
func usesOthersPSI(st escalate.State, p config.Escalation) bool {
	if p.OthersPSIAvg10 <= 0 {
		return false
	}
	switch st {
	case escalate.Throttled:
		return !p.Exempt && p.FreezeAfter > 0
	case escalate.SoftPaused:
		return p.ThawAfter > 0
	}
	return false
}

// evaluate observes the step once, advances its state machine and carries
// out the resulting action. It returns true when the step has ended.
func (s *step) evaluate(woken wakeup) bool {
	d := s.d
	mon := d.monitorOnly()
	others := d.othersPSI(s)

	ev, err := s.memEvents.flatKeyed()
	if err != nil {
		if !s.cg.Exists() {
			go d.removeStep(s, "cgroup vanished")
			return true
		}
		return false
	}
	// cpu.stat before cgroup.events: a task seen to have run before an
	// unpopulated cgroup.events has run and left. Read the other way round,
	// a command starting between the two reads looked ended, and was killed.
	s.mu.Lock()
	seen := s.everPopulated
	s.mu.Unlock()
	ran := !seen && s.ranTasks()
	var cge cgroupfs.Events
	if m, err := s.cgEvents.flatKeyed(); err == nil {
		cge = cgroupfs.Events{Populated: m["populated"] != 0, Frozen: m["frozen"] != 0}
	}

	s.mu.Lock()
	prev := s.events
	s.events = ev
	// Growth since the last look; the first successful read is the baseline.
	grew := func(k string) uint64 {
		if prev == nil || ev[k] < prev[k] {
			return 0
		}
		return ev[k] - prev[k]
	}
	var score uint32
	var onset uint64
	sp, on, ok := d.pressure(s.id)
	// The decision time: after every input was read, so a kernel onset
	// read above is never later than the logged action.
	now := mono()
	if ok {
		score, onset = mempressure.Score(sp, uint64(now)), on
		// A task sleeping off a long penalty leaves the entry stale while
		// the step is still throttled: keep the last score then.
		if (d.probe != nil && d.probe.InFlight(s.id) > 0) || (d.probe == nil && d.sleepingOffDelay(s.id, sp.LastUpdateNs, uint64(now))) {
			score = max(sp.ThrashScore, 1)
		}
	}
	// Full mode: step_pressure has the measured time (the probe's), and
	// memcg_agent_ops' private map the delays it asked for, which the
	// kernel sleeps in place of its stock penalty; escalate on the larger.
	if rs, ok := d.requestedScore(s.id, uint64(now)); ok {
		score = max(score, rs)
	}
	s.score = score
	// Probe: an in-kernel writer keeps step_pressure (the probe, or
	// memcg_agent_ops in full mode without it), so severity is judged by
	// the score.
	// max, oom and oom_kill are the step at its hard limit, the evidence
	// for a kill besides harm to other steps.
	// With the score stale, memory.events "high" growth since the last
	// look dates from the in-kernel writer's last update at the latest.
	var pressureAt time.Duration
	if ok && score == 0 && sp.LastUpdateNs != 0 && sp.LastUpdateNs <= uint64(now) {
		pressureAt = time.Duration(sp.LastUpdateNs)
	}
	in := escalate.Input{Now: now, Score: score, Probe: d.probe != nil || d.fullMode(), HighDelta: grew("high"), PressureAt: pressureAt,
		MaxDelta: grew("max"), OOMDelta: grew("oom"), OOMKillDelta: grew("oom_kill"),
		PSIFired: s.psiFired.Swap(false), OthersPSIAvg10: others}
	tr := s.m.Step(in)
	var events []eventlog.Event
	if tr != nil {
		e := eventlog.Event{Kind: "transition", Session: s.sid, Step: s.tid, CgroupID: s.id,
			From: tr.From.String(), To: tr.To.String(), Action: string(tr.Action), Cause: tr.Cause, KillCause: string(tr.Kill),
			DryRun: mon && tr.Action != escalate.None, ThrashScore: score, MemoryEvents: ev, MonoNS: uint64(now),
			Detail: "woken by " + woken.why, WokenMonoNS: woken.at}
		if onset != 0 && onset <= uint64(now) {
			e.OnsetMonoNS, e.ReactionNS = onset, int64(uint64(now)-onset)
		}
		events = append(events, e)
		if tr.From == escalate.Running && tr.To == escalate.Throttled && e.ReactionNS > 0 {
			d.metrics.reaction.Observe(time.Duration(e.ReactionNS).Seconds())
		}
		d.metrics.transitions.WithLabelValues(tr.From.String(), tr.To.String()).Inc()
		if tr.To == escalate.Running {
			s.burstUsed = false
		}
	}
	events = append(events, s.burst(tr, now, mon)...)
	s.populated = cge.Populated
	if cge.Populated || ran {
		s.everPopulated = true
	}
	ended := s.everPopulated && !cge.Populated
	s.mu.Unlock()
	// Freezing waits for the kernel (a task in a penalty sleep freezes only
	// when it wakes), so act without holding the step's lock.
	if tr != nil && !mon && tr.Action != escalate.None {
		if err := s.act(tr.Action); err != nil {
			events[0].Error = err.Error()
		}
	}
	for _, e := range events {
		d.log.Emit(e)
	}
	if tr != nil {
		d.saveState()
	}
	if ended {
		d.retireStep(s, "its processes exited")
		return true
	}
	return false
}

// ranTasks reports whether any task ever ran in the step, for a command
// that started and exited between two looks at cgroup.events.
func (s *step) ranTasks() bool {
	st, err := s.cg.FlatKeyed("cpu.stat")
	return err == nil && st["usage_usec"] > 0
}

// retireStep removes an ended step now, or after daemon.keep_ended so its
// cgroup and final counters can still be read. Its controller stops either
// way; a daemon shutdown during the wait leaves the step to the next
// start's adoption, which removes empty steps.
func (d *Daemon) retireStep(s *step, why string) {
	keep := d.Config().Daemon.KeepEnded.D()
	if keep <= 0 {
		go d.removeStep(s, why)
		return
	}
	s.mu.Lock()
	state := s.m.State
	s.mu.Unlock()
	d.log.Emit(eventlog.Event{Kind: "step_ended", Session: s.sid, Step: s.tid, CgroupID: s.id, Cause: why,
		To: state.String(), Detail: fmt.Sprintf("cgroup kept for %v", keep)})
	go func() {
		select {
		case <-time.After(keep):
			d.removeStep(s, why)
		case <-s.removed: // the client deleted it first
		case <-d.ctx.Done():
		}
	}()
}

// act carries out a transition's action on the cgroup.
func (s *step) act(a escalate.Action) error {
	ctx, cancel := context.WithTimeout(s.d.ctx, 10*time.Second)
	defer cancel()
	switch a {
	case escalate.Freeze:
		return s.cg.Freeze(ctx)
	case escalate.Thaw:
		return s.cg.Unfreeze(ctx)
	case escalate.Kill:
		// cgroup.kill reaches frozen tasks too; clearing cgroup.freeze
		// afterwards keeps a later reuse of the directory from starting frozen.
		if err := s.cg.Kill(); err != nil {
			return err
		}
		_ = s.cg.Write("cgroup.freeze", "0")
		return s.cg.WaitEmpty(ctx)
	}
	return nil
}

// burst raises memory.high by the profile's credit when a step first comes
// under pressure in an episode, and restores it when the credit's time is up
// (mainline mode only).
func (s *step) burst(tr *escalate.Transition, now time.Duration, mon bool) []eventlog.Event {
	mem := s.prof.Memory
	// In full mode memcg_agent_ops forgives an overage within the credit
	// itself (step_policy.mem_burst_credit_bytes).
	if mon || s.d.fullMode() || mem.BurstCredit == 0 || mem.High == 0 || mem.High == config.Unlimited {
		return nil
	}
	base := uint64(mem.High)
	switch {
	case tr != nil && tr.From == escalate.Running && tr.To == escalate.Throttled && !s.burstUsed && !s.burstOn:
		s.burstUsed, s.burstOn, s.burstUntil = true, true, now+mem.BurstDuration.D()
		e := eventlog.Event{Kind: "burst_start", Session: s.sid, Step: s.tid, CgroupID: s.id, MonoNS: uint64(now),
			Detail: fmt.Sprintf("memory.high %d -> %d for %v", base, base+uint64(mem.BurstCredit), mem.BurstDuration.D())}
		if err := s.cg.WriteLimit("memory.high", base+uint64(mem.BurstCredit)); err != nil {
			e.Error = err.Error()
		}
		return []eventlog.Event{e}
	case s.burstOn && (now >= s.burstUntil || s.m.State == escalate.Killed):
		s.burstOn = false
		e := eventlog.Event{Kind: "burst_end", Session: s.sid, Step: s.tid, CgroupID: s.id, MonoNS: uint64(now),
			Detail: fmt.Sprintf("memory.high back to %d", base)}
		if err := s.cg.WriteLimit("memory.high", base); err != nil {
			e.Error = err.Error()
		}
		return []eventlog.Event{e}
	}
	return nil
}

// reprofile applies a reloaded policy to a live step.
func (s *step) reprofile(cfg *config.Config, sess *session) {
	var labels map[string]string
	if sess != nil {
		labels = sess.Labels
	}
	name, p, err := cfg.Select(s.class, labels, s.argv)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.profName, s.prof, s.m.P = name, p, p.Escalation
	if cfg.Daemon.MonitorOnly {
		return
	}
	if err := s.d.applyKnobs(s.cg, p, s.d.cpuPolicyLocked() == config.CPUCgroup); err != nil {
		s.d.log.Emit(eventlog.Event{Kind: "error", Session: s.sid, Step: s.tid, Error: err.Error()})
	}
	pv := policyValue(s.class, p, false)
	_ = s.d.policyMap.Put(s.id, &pv)
}

// othersPSI is the highest memory.pressure some avg10 among the other steps.
func (d *Daemon) othersPSI(self *step) float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var m float64
	for _, s := range d.steps {
		if s != self {
			m = max(m, math.Float64frombits(s.psiAvg10.Load()))
		}
	}
	return m
}

// removeStep stops the step's controller, kills what is left in it and
// removes its cgroup and map entries.
// Concurrent callers (the client's delete and the daemon noticing the
// step's processes exited) share one removal and its result.
func (d *Daemon) removeStep(s *step, why string) error {
	s.removeOnce.Do(func() {
		s.removeErr = d.doRemoveStep(s, why)
		close(s.removed)
	})
	return s.removeErr
}

// The step stays listed until its cgroup is gone, so a client's DELETE
// that races the daemon's own cleanup waits for it instead of seeing 404
// while the directory still exists.
func (d *Daemon) doRemoveStep(s *step, why string) error {
	defer func() {
		d.mu.Lock()
		if d.steps[key(s.sid, s.tid)] == s {
			delete(d.steps, key(s.sid, s.tid))
		}
		d.mu.Unlock()
		d.saveState()
	}()
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	d.watch.remove(s)
	ev, _ := s.cg.FlatKeyed("memory.events")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := s.cg.RemoveAll(ctx, true)
	_ = d.policyMap.Delete(s.id)
	_ = d.pressureMap.Delete(s.id)
	if d.probe != nil {
		d.probe.Forget(s.id)
	}
	e := eventlog.Event{Kind: "step_removed", Session: s.sid, Step: s.tid, CgroupID: s.id, Cause: why, MemoryEvents: ev,
		To: s.m.State.String()}
	if err != nil {
		e.Error = err.Error()
	}
	d.log.Emit(e)
	d.protect.kick()
	d.guard.kick()
	return err
}

// kickByID wakes the controller of the step with cgroup id cgid, if any.
func (d *Daemon) kickByID(cgid uint64, why string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.steps {
		if s.id == cgid {
			s.kick(why)
			return
		}
	}
}

func (d *Daemon) lookupStep(sid, tid string) (*step, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.steps[key(sid, tid)]
	if !ok {
		return nil, errf(http.StatusNotFound, "no step %q in session %q", tid, sid)
	}
	return s, nil
}

func (s *step) status() api.Step {
	s.mu.Lock()
	defer s.mu.Unlock()
	high, _ := s.cg.Read("memory.high")
	cur, _ := s.cg.ReadUint("memory.current")
	return api.Step{Session: s.sid, Step: s.tid, Class: s.class, Profile: s.profName, Cgroup: s.cg.Path, CgroupID: s.id,
		State: s.m.State.String(), Freezes: s.m.Freezes, MemoryCurrent: cur, MemoryHigh: high,
		MemoryEvents: s.events, ThrashScore: s.score, Argv: s.argv}
}

func (d *Daemon) stepList() []*step {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*step, 0, len(d.steps))
	for _, s := range d.steps {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return key(out[i].sid, out[i].tid) < key(out[j].sid, out[j].tid) })
	return out
}
