package daemon

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentcgroup/agentcgroup/bpf/mempressure"
	"github.com/agentcgroup/agentcgroup/daemon/escalate"
)

// metrics reads per-step figures at scrape time (so they are never stale)
// and keeps counters for transitions, reaction times and reloads.
type metrics struct {
	d           *Daemon
	transitions *prometheus.CounterVec
	reaction    prometheus.Histogram
	reloads     *prometheus.CounterVec

	cpu, memCur, memEvents, thrDelay, thrEvents, score, state, freezes *prometheus.Desc
	memMode, opsEvents, protEvents, protBytes                          *prometheus.Desc
}

var stepLabels = []string{"session", "step", "class", "profile"}

func newMetrics(d *Daemon) *metrics {
	desc := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc("agentcgroup_step_"+name, help, append(append([]string{}, stepLabels...), extra...), nil)
	}
	return &metrics{
		d: d,
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentcgroup_transitions_total",
			Help: "Escalation state transitions."}, []string{"from", "to"}),
		reaction: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agentcgroup_reaction_seconds",
			Help:    "Time from the kernel-observed start of a pressure episode to the daemon's RUNNING->THROTTLED transition.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentcgroup_config_reloads_total",
			Help: "Policy reloads by result."}, []string{"result"}),
		cpu:       desc("cpu_usage_seconds_total", "CPU time used (cpu.stat usage_usec)."),
		memCur:    desc("memory_current_bytes", "memory.current."),
		memEvents: desc("memory_events_total", "memory.events counters (high, max, oom, oom_kill).", "event"),
		thrDelay:  desc("throttle_delay_seconds_total", "Time spent in the kernel's memory.high handler, reclaim and throttle sleep, as the probe measured it (both memory modes)."),
		thrEvents: desc("throttle_events_total", "Trips through the kernel's memory.high handler (the probe; memcg_agent_ops in full mode only when the probe is off)."),
		score:     desc("thrash_score", "Thrash score 0..1000 (0 when stale)."),
		state:     desc("state", "1 for the step's current escalation state.", "state"),
		freezes:   desc("freezes_total", "Times the daemon froze the step."),
		memMode: prometheus.NewDesc("agentcgroup_memory_mode",
			"1 for the memory mode in force: mainline (memory.high and the probe) or full (memcg_agent_ops).", []string{"mode"}, nil),
		opsEvents: prometheus.NewDesc("agentcgroup_memcg_ops_events_total",
			"memcg_agent_ops counters in full mode: delay_calls, delay_nonzero, delay_credit, low_grants, min_grants, revoked.", []string{"kind"}, nil),
		protEvents: prometheus.NewDesc("agentcgroup_protection_events_total",
			"Mainline memory.low protection: granted (steps), charged_ms (protection time under reclaim), revoked_budget, revoked_max, revoked_oom.", []string{"kind"}, nil),
		protBytes: prometheus.NewDesc("agentcgroup_protected_bytes",
			"Mainline memory.low protection: the protected steps' memory.current at the protector's last look.", nil, nil),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.cpu, m.memCur, m.memEvents, m.thrDelay, m.thrEvents, m.score, m.state, m.freezes, m.memMode, m.opsEvents, m.protEvents, m.protBytes} {
		ch <- d
	}
	m.transitions.Describe(ch)
	m.reaction.Describe(ch)
	m.reloads.Describe(ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	now := uint64(mono())
	for _, mode := range []string{ModeMainline, ModeFull} {
		v := 0.0
		if mode == m.d.memMode {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(m.memMode, prometheus.GaugeValue, v, mode)
	}
	if st := m.d.opsStats(); st != nil {
		for k, v := range map[string]uint64{"delay_calls": st.DelayCalls, "delay_nonzero": st.DelayNonzero,
			"delay_credit": st.DelayCredit, "low_grants": st.LowGrants, "min_grants": st.MinGrants, "revoked": st.Revoked} {
			ch <- prometheus.MustNewConstMetric(m.opsEvents, prometheus.CounterValue, float64(v), k)
		}
	}
	if st := m.d.protect.Stats(); st != nil {
		for k, v := range map[string]uint64{"granted": st.Granted, "charged_ms": st.ChargedMs,
			"revoked_budget": st.RevokedBudget, "revoked_max": st.RevokedMax, "revoked_oom": st.RevokedOOM} {
			ch <- prometheus.MustNewConstMetric(m.protEvents, prometheus.CounterValue, float64(v), k)
		}
		ch <- prometheus.MustNewConstMetric(m.protBytes, prometheus.GaugeValue, float64(st.LowBytes))
	}
	for _, s := range m.d.stepList() {
		s.mu.Lock()
		lv := []string{s.sid, s.tid, s.class, s.profName}
		st, freezes := s.m.State, s.m.Freezes
		s.mu.Unlock()
		if cs, err := s.cg.FlatKeyed("cpu.stat"); err == nil {
			ch <- prometheus.MustNewConstMetric(m.cpu, prometheus.CounterValue, float64(cs["usage_usec"])/1e6, lv...)
		}
		if cur, err := s.cg.ReadUint("memory.current"); err == nil {
			ch <- prometheus.MustNewConstMetric(m.memCur, prometheus.GaugeValue, float64(cur), lv...)
		}
		if ev, err := s.cg.FlatKeyed("memory.events"); err == nil {
			for _, k := range []string{"high", "max", "oom", "oom_kill"} {
				ch <- prometheus.MustNewConstMetric(m.memEvents, prometheus.CounterValue, float64(ev[k]), append(lv, k)...)
			}
		}
		if sp, ok, err := mempressure.Lookup(m.d.pressureMap, s.id); err == nil && ok {
			ch <- prometheus.MustNewConstMetric(m.thrDelay, prometheus.CounterValue, time.Duration(sp.TotalDelayNs).Seconds(), lv...)
			ch <- prometheus.MustNewConstMetric(m.thrEvents, prometheus.CounterValue, float64(sp.TotalEvents), lv...)
			ch <- prometheus.MustNewConstMetric(m.score, prometheus.GaugeValue, float64(mempressure.Score(sp, now)), lv...)
		}
		for _, x := range []escalate.State{escalate.Running, escalate.Throttled, escalate.SoftPaused, escalate.Killed} {
			v := 0.0
			if x == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(m.state, prometheus.GaugeValue, v, append(lv, x.String())...)
		}
		ch <- prometheus.MustNewConstMetric(m.freezes, prometheus.CounterValue, float64(freezes), lv...)
	}
	m.transitions.Collect(ch)
	m.reaction.Collect(ch)
	m.reloads.Collect(ch)
}
