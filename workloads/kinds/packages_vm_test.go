package kinds

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/vmtest"
	"github.com/agentcgroup/agentcgroup/workloads/latency"
)

// Debian's stress-ng and cyclictest, added to the guest image by
// [guest] packages (harness/guestpkg): both start in the guest, whose base
// image has no C library, with only the libraries and loader the host put
// there; cyclictest's histogram goes through the command kind's victim
// path and parser, as in a scenario.
func TestDebianToolsInGuest(t *testing.T) {
	if vmtest.Run(t, vmtest.Options{CPUs: 2, MemMB: 1024, Timeout: 4 * time.Minute, Packages: []string{"stress-ng", "rt-tests"}}) {
		return
	}
	run := func(argv ...string) string {
		t.Helper()
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		t.Logf("%s:\n%s", strings.Join(argv, " "), out)
		if err != nil {
			t.Fatalf("%s: %v", strings.Join(argv, " "), err)
		}
		return string(out)
	}
	out := run("stress-ng", "--cpu", "1", "--timeout", "2s")
	if !strings.Contains(out, "successful run completed") {
		t.Errorf("stress-ng did not report a completed run")
	}
	// -q alone prints one summary line per thread at the end.
	out = run("cyclictest", "-q", "-D", "2", "-i", "1000")
	if !strings.Contains(out, "T: 0") {
		t.Errorf("cyclictest printed no summary for thread 0")
	}

	// The same run with a histogram (-h: what the cyclictest parser reads),
	// as a command victim: parsed into the latency recorder.
	var buf bytes.Buffer
	var log syncBuffer
	start := time.Now()
	rec, err := latency.New(&buf, start, latency.DefaultInterval, "cyclictest")
	if err != nil {
		t.Fatal(err)
	}
	p := &CommandParams{Argv: []string{"cyclictest", "-q", "-D", "2", "-i", "1000", "-h", "2000"}, Parser: ParserCyclictest}
	if err := runCommandVictim(context.Background(), VictimRun{Params: p, Start: start, Dur: 30 * time.Second, Rec: rec, Log: &log}); err != nil {
		t.Fatalf("cyclictest as a victim: %v\n%s", err, log.String())
	}
	t.Logf("cyclictest: %d samples, max %v; unparsed output:\n%s", rec.Count(), rec.Max(), log.String())
	// One thread, a 1 ms interval for 2 s: up to 2000 cycles, fewer when
	// the emulated guest oversleeps.
	if n := rec.Count(); n < 100 || n > 2100 {
		t.Errorf("%d latencies parsed, want about 2000 (one per 1 ms cycle over 2 s)", n)
	}
	if rec.Max() <= 0 {
		t.Errorf("max latency %v", rec.Max())
	}
}
