package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/daemon/api"
	"github.com/agentcgroup/agentcgroup/daemon/eventlog"
	"github.com/agentcgroup/agentcgroup/daemon/memhog"
	"github.com/agentcgroup/agentcgroup/harness/vmtest"
)

// protectPolicy: an interactive step that may be protected (with budget as
// its protect_budget), a background step that may not, neither escalated.
func protectPolicy(protect bool, budget string) string {
	return fmt.Sprintf(`
[profiles.interactive]
[profiles.interactive.memory]
protect = %v
protect_budget = %q
[profiles.interactive.escalation]
exempt = true
[profiles.background]
[profiles.background.escalation]
exempt = true
`, protect, budget)
}

// protectRun is one run of the mainline protection scenario.
type protectRun struct {
	swappedMiB float64 // the idle step's memory.swap.current once the hog is done
	// memory.low of the idle step, its session, the hog's session and the
	// base once reclaim at the base's limit began, and at the end.
	during, end [4]string
	status      *api.ProtectionStats
	events      []eventlog.Event
}

// mainlineProtectRun: in the daemon's tree, limited to 96 MiB at its base,
// an interactive step builds a 32 MiB working set and goes idle; a
// background step in another session then grows to 160 MiB. Reclaim at
// the base's limit takes pages from whichever step is not protected; the
// idle step's are cold, so without protection they go first.
func mainlineProtectRun(t *testing.T, protect bool, budget string) protectRun {
	t.Helper()
	e := newEnv(t, protectPolicy(protect, budget), `memory_mode = "mainline"`)
	_, stop := e.start()
	base := cgroupfs.DefaultTree.Root()
	defer func() {
		stop()
		// The next run starts on a fresh tree.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := base.RemoveAll(ctx, true); err != nil {
			t.Errorf("remove the tree: %v", err)
		}
	}()
	c := e.client()
	for _, sid := range []string{"keep", "hog"} {
		if _, err := c.StartSession(api.SessionRequest{ID: sid}); err != nil {
			t.Fatal(err)
		}
	}
	if err := base.Write("memory.max", "96M"); err != nil {
		t.Fatal(err)
	}
	idle, err := memhog.Command("mode=burst,prefill=32M,burst=0,hold=5m")
	if err != nil {
		t.Fatal(err)
	}
	st := runStep(t, c, "keep", "idle", "interactive", idle)
	defer stopProc(t, idle)
	step := cgroupfs.Cgroup{Path: st.Cgroup}
	sess := cgroupfs.Cgroup{Path: filepath.Dir(st.Cgroup)}
	waitFor(t, time.Minute, "the idle step's working set", func() bool {
		cur, _ := step.ReadUint("memory.current")
		return cur >= 32<<20
	})
	if protect {
		waitFor(t, 10*time.Second, "the session's memory.low to cover the working set", func() bool {
			low, _ := sess.ReadUint("memory.low")
			return low >= 32<<20
		})
	}
	time.Sleep(500 * time.Millisecond) // idle: the working set turns cold

	hog, err := memhog.Command("mode=grow,chunk=8M,every=20ms,total=160M,hold=5m")
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	hog.Stdout = out
	hst := runStep(t, c, "hog", "grow", "background", hog)
	defer stopProc(t, hog)
	var r protectRun
	lows := func() (v [4]string) {
		for i, cg := range []cgroupfs.Cgroup{step, sess, {Path: filepath.Dir(hst.Cgroup)}, base} {
			v[i], _ = cg.Read("memory.low")
		}
		return v
	}
	waitFor(t, 2*time.Minute, "the hog to grow to 160M", func() bool {
		if ev, _ := base.FlatKeyed("memory.events"); r.during[0] == "" && ev["max"] > 0 {
			r.during = lows()
		}
		return strings.Contains(out.String(), "grown-all")
	})
	r.end = lows()
	swap, err := step.ReadUint("memory.swap.current")
	if err != nil {
		t.Fatal(err)
	}
	r.swappedMiB = float64(swap) / (1 << 20)
	status, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	r.status = status.Protection
	r.events = e.events()
	return r
}

func kinds(evs []eventlog.Event, kind string) []eventlog.Event {
	var out []eventlog.Event
	for _, e := range evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// Mainline memory protection: the daemon's memory.low on a protected step
// and, tracking its usage, on its session and the base keeps an idle
// working set in memory while a neighbour in another session fills the
// tree's limit; the neighbour's session gets none. A spent budget withdraws
// it.
func TestGuestMainlineProtectionVM(t *testing.T) {
	if ranInPatchedVM(t) {
		return
	}
	vmtest.ZramSwap(t, 512)
	none := mainlineProtectRun(t, false, "30s")
	prot := mainlineProtectRun(t, true, "2m")
	short := mainlineProtectRun(t, true, "200ms")
	for _, r := range []struct {
		name string
		protectRun
	}{{"unprotected", none}, {"protected", prot}, {"budget 200ms", short}} {
		t.Logf("%-12s idle step swapped %5.1f MiB; memory.low (step, session, hog session, base) under reclaim %q, at the end %q; counters %+v",
			r.name, r.swappedMiB, r.during, r.end, r.status)
	}
	if none.swappedMiB < 8 {
		t.Fatalf("without protection the idle working set should lose pages to the hog (swapped %.1f MiB); the scenario is too weak", none.swappedMiB)
	}
	if none.status == nil || none.status.Granted != 0 || none.during != [4]string{"0", "0", "0", "0"} {
		t.Errorf("unprotected run: the daemon protected something: %+v, memory.low %q", none.status, none.during)
	}

	if prot.during[0] != "max" {
		t.Errorf("protected step's memory.low = %q, want max", prot.during[0])
	}
	sessLow, _ := strconv.ParseUint(prot.during[1], 10, 64)
	baseLow, _ := strconv.ParseUint(prot.during[3], 10, 64)
	if sessLow < 32<<20 || sessLow > 48<<20 {
		t.Errorf("session memory.low = %q, want the protected step's usage (32 MiB and its runtime)", prot.during[1])
	}
	// A look between the two reads may move both by what the step's
	// runtime allocated.
	if d := int64(baseLow) - int64(sessLow); d < -(1<<20) || d > 1<<20 || prot.during[2] != "0" {
		t.Errorf("base memory.low %q (want the session's %q), hog session %q (want 0): protection beyond the protected steps' usage passes to the hog", prot.during[3], prot.during[1], prot.during[2])
	}
	if prot.swappedMiB > none.swappedMiB/4 {
		t.Errorf("protection kept too little: %.1f MiB swapped, %.1f MiB without", prot.swappedMiB, none.swappedMiB)
	}
	if s := prot.status; s == nil || s.Granted != 1 || s.ChargedMs == 0 || s.Protected != 1 {
		t.Errorf("protection counters %+v: want one step granted, still protected, with time charged under reclaim", s)
	}
	if n := len(kinds(prot.events, "protected")); n != 1 {
		t.Errorf("want one protected event, got %d", n)
	}

	// A budget shorter than the reclaim: withdrawn, every low back at 0.
	rev := kinds(short.events, "protection_revoked")
	if len(rev) != 1 || rev[0].Cause != "budget" || short.status == nil || short.status.RevokedBudget != 1 || short.status.Protected != 0 {
		t.Fatalf("want one budget revocation, got events %+v counters %+v", rev, short.status)
	}
	if short.end != [4]string{"0", "0", "0", "0"} {
		t.Errorf("memory.low (step, session, hog session, base) after the revocation: %q, want all 0", short.end)
	}
}
