package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/eventlog"
)

func (d *Daemon) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/sessions", d.handle(d.postSession))
	mux.HandleFunc("DELETE /v1/sessions/{id}", d.handle(d.deleteSession))
	mux.HandleFunc("POST /v1/steps", d.handle(d.postStep))
	mux.HandleFunc("GET /v1/steps/{sid}/{tid}", d.handle(d.getStep))
	mux.HandleFunc("DELETE /v1/steps/{sid}/{tid}", d.handle(d.deleteStep))
	mux.HandleFunc("GET /v1/status", d.handle(d.getStatus))
	mux.HandleFunc("POST /v1/reload", d.handle(d.postReload))
	return mux
}

type handlerFunc func(r *http.Request) (int, any, error)

func (d *Daemon) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		code, out, err := h(r)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			code = http.StatusInternalServerError
			var he *httpError
			if errors.As(err, &he) {
				code = he.code
			}
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(api.Error{Error: err.Error()})
			return
		}
		w.WriteHeader(code)
		if out != nil {
			json.NewEncoder(w).Encode(out)
		}
	}
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errf(http.StatusBadRequest, "bad request body: %v", err)
	}
	return nil
}

func (d *Daemon) postSession(r *http.Request) (int, any, error) {
	var req api.SessionRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if err := cgroupfs.ValidateID("session", req.ID); err != nil {
		return 0, nil, errf(http.StatusBadRequest, "%v", err)
	}
	for k := range req.Labels {
		if k == "" {
			return 0, nil, errf(http.StatusBadRequest, "session label with an empty name; use name=value")
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.sessions[req.ID]; ok {
		return 0, nil, errf(http.StatusConflict, "session %q already exists; end it first or pick another id", req.ID)
	}
	if _, err := d.ensureSessionCgroup(req.ID); err != nil {
		return 0, nil, err
	}
	d.sessions[req.ID] = &session{ID: req.ID, Labels: req.Labels}
	d.saveStateLocked()
	d.log.Emit(eventlog.Event{Kind: "session_started", Session: req.ID, Detail: fmt.Sprint(req.Labels)})
	return http.StatusCreated, api.Session{ID: req.ID, Labels: req.Labels, Steps: []string{}}, nil
}

func (d *Daemon) deleteSession(r *http.Request) (int, any, error) {
	sid := r.PathValue("id")
	force := r.URL.Query().Get("force") != ""
	d.mu.Lock()
	if _, ok := d.sessions[sid]; !ok {
		d.mu.Unlock()
		return 0, nil, errf(http.StatusNotFound, "session %q does not exist", sid)
	}
	var live []*step
	for _, s := range d.steps {
		if s.sid == sid {
			live = append(live, s)
		}
	}
	d.mu.Unlock()
	if len(live) > 0 && !force {
		return 0, nil, errf(http.StatusConflict, "session %q has %d live steps; wait for them or end it with --force to kill them", sid, len(live))
	}
	for _, s := range live {
		_ = d.removeStep(s, "session ended with --force")
	}
	cg, _ := d.tree.Session(sid)
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	if err := cg.RemoveAll(ctx, force); err != nil {
		return 0, nil, err
	}
	d.mu.Lock()
	delete(d.sessions, sid)
	d.saveStateLocked()
	d.mu.Unlock()
	d.log.Emit(eventlog.Event{Kind: "session_ended", Session: sid})
	return http.StatusOK, nil, nil
}

func (d *Daemon) postStep(r *http.Request) (int, any, error) {
	var req api.StepRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	s, err := d.createStep(req)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, s.status(), nil
}

func (d *Daemon) getStep(r *http.Request) (int, any, error) {
	s, err := d.lookupStep(r.PathValue("sid"), r.PathValue("tid"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, s.status(), nil
}

func (d *Daemon) deleteStep(r *http.Request) (int, any, error) {
	s, err := d.lookupStep(r.PathValue("sid"), r.PathValue("tid"))
	if err != nil {
		return 0, nil, err
	}
	if err := d.removeStep(s, "ended by client"); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, nil, nil
}

func (d *Daemon) getStatus(r *http.Request) (int, any, error) {
	d.mu.Lock()
	st := api.Status{Config: d.cfg.Path, MonitorOnly: d.cfg.Daemon.MonitorOnly, Probe: d.probeStatus,
		Scheduler: d.schedStatus, LastReload: d.lastReload, Sessions: []api.Session{}, Steps: []api.Step{},
		MemoryMode: d.memMode, MemoryModeReason: d.memModeWhy, CPUPolicy: d.cpuPolicyLocked(), MemcgOps: d.opsStats(),
		Protection: d.protect.Stats(), NodeGuard: d.guard.Stats()}
	bySess := map[string][]string{}
	for _, s := range d.steps {
		bySess[s.sid] = append(bySess[s.sid], s.tid)
	}
	for _, s := range d.sessions {
		steps := bySess[s.ID]
		sort.Strings(steps)
		if steps == nil {
			steps = []string{}
		}
		st.Sessions = append(st.Sessions, api.Session{ID: s.ID, Labels: s.Labels, Steps: steps})
	}
	d.mu.Unlock()
	sort.Slice(st.Sessions, func(i, j int) bool { return st.Sessions[i].ID < st.Sessions[j].ID })
	for _, s := range d.stepList() {
		st.Steps = append(st.Steps, s.status())
	}
	return http.StatusOK, st, nil
}

func (d *Daemon) postReload(r *http.Request) (int, any, error) {
	if err := d.Reload(); err != nil {
		return 0, nil, errf(http.StatusUnprocessableEntity, "policy reload refused, previous policy kept: %v", err)
	}
	return http.StatusOK, nil, nil
}
