package mempressure

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/bpf/mempressure/pressuretest"
	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/memhog"
)

func TestMain(m *testing.M) {
	memhog.MaybeRun()
	pressuretest.MaybeRun()
	os.Exit(m.Run())
}

func TestMapSpecsMatchHeader(t *testing.T) {
	pol, pr, err := MapSpecs()
	if err != nil {
		t.Fatal(err)
	}
	// Sizes of struct step_policy / step_pressure in agentcgroup.h.
	if pol.KeySize != 8 || pol.ValueSize != 64 || pol.MaxEntries != MaxSteps {
		t.Fatalf("step_policy spec %+v", pol)
	}
	if pr.KeySize != 8 || pr.ValueSize != 40 || pr.MaxEntries != MaxSteps {
		t.Fatalf("step_pressure spec %+v", pr)
	}
}

func TestScoreStaleness(t *testing.T) {
	sp := StepPressure{LastUpdateNs: 1_000_000_000, ThrashScore: 300}
	if Score(sp, 1_000_000_000+uint64(StaleAfter)/2) != 300 {
		t.Fatal("fresh entry lost its score")
	}
	if Score(sp, 1_000_000_000+uint64(StaleAfter)+1) != 0 {
		t.Fatal("stale entry kept its score")
	}
	if Score(StepPressure{ThrashScore: 5}, 10) != 0 {
		t.Fatal("never-updated entry has a score")
	}
}

// mkCgroup makes a child of the root with a memory.high.
func mkCgroup(t *testing.T, name string, high uint64) cgroupfs.Cgroup {
	t.Helper()
	cg, err := cgroupfs.Mkdir("/sys/fs/cgroup/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if err := cg.WriteLimit("memory.high", high); err != nil {
		t.Fatal(err)
	}
	return cg
}

// burst runs memhog's burst mode in cg and calls atT1 right after the
// workload reports that its over-high allocation returned.
func burst(t *testing.T, cg cgroupfs.Cgroup, spec string, atT1 func(t0, t1 uint64)) {
	t.Helper()
	cmd, err := memhog.Command(spec)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cg.Start(cmd); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var t0 uint64
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "t0":
			t0 = v
		case "t1":
			atT1(t0, v)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("memhog: %v", err)
	}
}

// The probe must record a step's memory.high throttle in step_pressure
// before the throttled allocation even returns to user space.
func TestGuestProbeRecordsThrottle(t *testing.T) {
	if ranInVM(t) {
		return
	}
	sym, err := FindSymbol()
	if err != nil {
		t.Fatal(err)
	}
	if sym != AttachCandidates[0] {
		t.Fatalf("pinned 7.3 kernel should offer %s, found %s", AttachCandidates[0], sym)
	}
	p, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	reg := mkCgroup(t, "mp-registered", 16<<20)
	unreg := mkCgroup(t, "mp-unregistered", 16<<20)
	regID, _ := reg.ID()
	unregID, _ := unreg.ID()
	if err := p.PolicyMap().Put(regID, &StepPolicy{Class: 2}); err != nil {
		t.Fatal(err)
	}
	onsets := make(chan Onset, 16)
	go p.WatchOnsets(func(o Onset) { onsets <- o })
	var seen StepPressure
	var seenOK bool
	var onset, t0, t1 uint64
	burst(t, reg, "mode=burst,prefill=edge-2M,burst=4M,hold=100ms", func(a, b uint64) {
		// Read before anything else: this is the state at the moment the
		// workload got control back.
		seen, seenOK, _ = Lookup(p.PressureMap(), regID)
		onset, _, _ = p.Onset(regID)
		t0, t1 = a, b
	})
	if !seenOK || seen.TotalEvents == 0 {
		t.Fatalf("no step_pressure entry when the over-high allocation returned: %+v", seen)
	}
	if onset < t0 || onset > t1 {
		t.Fatalf("onset %d outside the over-high allocation [%d, %d]", onset, t0, t1)
	}
	t.Logf("breach->kernel update: onset %.3f ms after the allocation started; allocation took %.3f ms",
		float64(onset-t0)/1e6, float64(t1-t0)/1e6)

	select {
	case o := <-onsets:
		if o.CgroupID != regID || o.MonoNS != onset {
			t.Fatalf("ring buffer onset %+v, want cgroup %d at %d", o, regID, onset)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no onset record in the ring buffer")
	}
	final, ok, err := Lookup(p.PressureMap(), regID)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	ev, _ := reg.FlatKeyed("memory.events")
	t.Logf("final %+v, memory.events high=%d", final, ev["high"])
	if final.TotalDelayNs == 0 || final.DelayEwmaNs == 0 || final.ThrashScore == 0 || final.RecentEvents == 0 {
		t.Fatalf("entry not filled in by the exit hook: %+v", final)
	}
	if final.LastUpdateNs < onset {
		t.Fatalf("last update %d before onset %d", final.LastUpdateNs, onset)
	}
	if ev["high"] == 0 {
		t.Fatal("memory.events high stayed 0: the workload never went over memory.high")
	}

	burst(t, unreg, "mode=burst,prefill=edge-2M,burst=4M,hold=10ms", func(uint64, uint64) {})
	if _, ok, _ := Lookup(p.PressureMap(), unregID); ok {
		t.Fatal("an unregistered cgroup got an entry without track_all")
	}
	for _, cg := range []cgroupfs.Cgroup{reg, unreg} {
		if err := cg.Remove(); err != nil {
			t.Error(err)
		}
	}
}

func TestGuestTrackAll(t *testing.T) {
	if ranInVM(t) {
		return
	}
	p, err := Load(Options{TrackAll: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cg := mkCgroup(t, "mp-any", 16<<20)
	defer cg.Remove()
	id, _ := cg.ID()
	burst(t, cg, "mode=burst,prefill=edge-2M,burst=4M,hold=10ms", func(uint64, uint64) {})
	if sp, ok, _ := Lookup(p.PressureMap(), id); !ok || sp.TotalEvents == 0 {
		t.Fatalf("track_all did not record: %+v %v", sp, ok)
	}
}

func TestGuestMissingSymbolIsReported(t *testing.T) {
	if ranInVM(t) {
		return
	}
	_, err := Load(Options{Symbol: "agc_no_such_function"})
	if err == nil {
		t.Fatal("attaching to a missing function succeeded")
	}
	if !strings.Contains(err.Error(), "agc_no_such_function") {
		t.Fatalf("error %q does not name the symbol", err)
	}
}

// A step that thrashed, went quiet for longer than StaleAfter and then
// breaches once more starts its new episode at the new delay: the probe
// restarts the EWMA instead of folding the new delays into the old one,
// and the old score is never shown as fresh.
func TestGuestStaleEntryRestartsEWMA(t *testing.T) {
	if ranInVM(t) {
		return
	}
	p, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cg := mkCgroup(t, "mp-stale", 16<<20)
	defer cg.Remove()
	id, _ := cg.ID()
	if err := p.PolicyMap().Put(id, &StepPolicy{Class: 3}); err != nil {
		t.Fatal(err)
	}

	// Episode 1: 2 MiB over a 16 MiB memory.high with no swap, so the
	// stock penalty sleeps for up to its 2 s cap per event.
	burst(t, cg, "mode=burst,prefill=edge-2M,burst=4M,hold=10ms", func(uint64, uint64) {})
	a, ok, err := Lookup(p.PressureMap(), id)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	t.Logf("episode 1: ewma %v score %d events %d", time.Duration(a.DelayEwmaNs), a.ThrashScore, a.TotalEvents)
	if a.ThrashScore < 100 {
		t.Fatalf("episode 1 should thrash (score >= 100), got %+v", a)
	}

	// Episode 2: one charge batch past memory.high, a few light events,
	// read as soon as the over-high allocation returns. On a loaded host
	// reclaim can make even this breach long; then a restart cannot be
	// told from folding, and the breach is tried again after another
	// quiet spell (its entry becomes the old episode).
	var b StepPressure
	var n uint64
	var newDelay, ewma, folded time.Duration
	for attempt := 1; ; attempt++ {
		time.Sleep(StaleAfter + 500*time.Millisecond)
		if s := Score(a, Now()); s != 0 {
			t.Fatalf("a quiet step reads score %d after %v", s, StaleAfter)
		}
		burst(t, cg, "mode=burst,prefill=edge-1M,burst=1280K,hold=10ms", func(uint64, uint64) {
			b, _, _ = Lookup(p.PressureMap(), id)
		})
		n = b.TotalEvents - a.TotalEvents
		newDelay = time.Duration(b.TotalDelayNs - a.TotalDelayNs)
		ewma = time.Duration(b.DelayEwmaNs)
		t.Logf("episode 2, attempt %d: %d events, %v of delay in all, ewma %v score %d", attempt, n, newDelay, ewma, b.ThrashScore)
		if n == 0 {
			t.Fatalf("episode 2 recorded no event: %+v", b)
		}
		// Folding into the old EWMA would leave at least (3/4)^n of it.
		folded = time.Duration(a.DelayEwmaNs)
		for i := uint64(0); i < n; i++ {
			folded = folded * 3 / 4
		}
		if folded > newDelay {
			break
		}
		if attempt == 4 {
			t.Fatalf("in %d attempts episode 2 always had too many or too long events (last: %d, %v) to tell a restart (ewma <= %v) from folding (ewma >= %v): the host is too loaded for this test",
				attempt, n, newDelay, newDelay, folded)
		}
		a = b
	}
	if ewma > newDelay || ewma >= folded {
		t.Fatalf("ewma %v after the quiet spell carries the old episode (restart: <= %v; folded: >= %v)", ewma, newDelay, folded)
	}
	if b.ThrashScore != max(ScoreOf(ewma), 1) {
		t.Fatalf("score %d does not match ewma %v (want %d)", b.ThrashScore, ewma, max(ScoreOf(ewma), 1))
	}
	if b.ThrashScore >= a.ThrashScore {
		t.Fatalf("the light breach scores %d, no lower than the old thrash's %d", b.ThrashScore, a.ThrashScore)
	}
}
