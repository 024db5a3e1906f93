package runner

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/cgroupfs"
	"github.com/agentcgroup/agentcgroup/harness/analysis"
	"github.com/agentcgroup/agentcgroup/harness/trial"
	"github.com/agentcgroup/agentcgroup/harness/vmtest"
)

// zramStat reads /sys/block/zram0/mm_stat: bytes stored (orig_data_size)
// and the memory they take compressed (compr_data_size).
func zramStat(t *testing.T) (orig, compr int64) {
	t.Helper()
	b, err := os.ReadFile("/sys/block/zram0/mm_stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	orig, _ = strconv.ParseInt(f[0], 10, 64)
	compr, _ = strconv.ParseInt(f[1], 10, 64)
	return orig, compr
}

// A blow-up over its memory.high must cost the kernel real reclaim work in
// proportion to the data it holds: with fill = random, what reclaim moves
// to zram stays its full size there (and took a failed compression per
// page); with the sparse fill it shrinks to almost nothing, so throttling
// it cost zram nearly no memory. Both run alone in the same guest, one
// after the other, each until 12 MiB of it sits in zram.
func TestIncompressibleBlowupCostsReclaim(t *testing.T) {
	if vmtest.Run(t, vmtest.Options{CPUs: 2, MemMB: 512, Timeout: 8 * time.Minute}) {
		return
	}
	self, err := exec.LookPath("agentwork")
	if err != nil {
		t.Fatalf("agentwork is not on the guest's PATH: %v", err)
	}
	if _, err := setupZram(256); err != nil {
		t.Fatal(err)
	}
	const swapped = 12 << 20
	type result struct {
		orig, compr, pgsteal, sysUS int64
		took                        time.Duration
	}
	run := func(fill string) result {
		cg, err := cgroupfs.Mkdir(filepath.Join(cgroupfs.DefaultMount, "blowup-"+fill))
		if err != nil {
			t.Fatal(err)
		}
		if err := cg.WriteLimit("memory.high", 16<<20); err != nil {
			t.Fatal(err)
		}
		origBase, comprBase := zramStat(t)
		cmd := exec.Command(self, "memory_blowup", "--target", "48M", "--rate", "0", "--fill", fill, "--threads", "1", "--seed", "7")
		if err := cg.Start(cmd); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var r result
		for time.Since(start) < 3*time.Minute {
			time.Sleep(500 * time.Millisecond)
			o, c := zramStat(t)
			r.orig, r.compr = o-origBase, c-comprBase
			if r.orig >= swapped {
				break
			}
		}
		r.took = time.Since(start)
		ms, _ := cg.FlatKeyed("memory.stat")
		cs, _ := cg.FlatKeyed("cpu.stat")
		r.pgsteal, r.sysUS = int64(ms["pgsteal"]), int64(cs["system_usec"])
		cmd.Process.Kill()
		cmd.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cg.RemoveAll(ctx, true); err != nil {
			t.Logf("removing %s: %v", cg.Path, err)
		}
		t.Logf("fill %s: %d KiB into zram taking %d KiB (%.0f%%) after %v; pgsteal %d pages, system time %d ms",
			fill, r.orig>>10, r.compr>>10, 100*float64(r.compr)/float64(max(r.orig, 1)), r.took.Round(time.Millisecond), r.pgsteal, r.sysUS/1000)
		if r.orig < swapped {
			t.Fatalf("fill %s: only %d KiB reached zram in %v; the blow-up did not push past its memory.high", fill, r.orig>>10, r.took)
		}
		return r
	}
	sparse := run("sparse")
	random := run("random")
	if random.compr < random.orig*9/10 {
		t.Errorf("random fill compressed to %d of %d KiB: it should not compress", random.compr>>10, random.orig>>10)
	}
	if sparse.compr > sparse.orig/4 {
		t.Errorf("sparse fill compressed only to %d of %d KiB; the contrast with the random fill is gone", sparse.compr>>10, sparse.orig>>10)
	}
	// zram memory per byte reclaimed: what throttling the neighbour
	// costs everyone else's memory.
	if r, s := float64(random.compr)/float64(random.orig), float64(sparse.compr)/float64(sparse.orig); r < 4*s {
		t.Errorf("zram memory per reclaimed byte: random %.3f, sparse %.3f; want random at least 4x", r, s)
	}
	// The reclaimed pages were stolen from the blow-up's cgroup.
	if random.pgsteal < swapped/4096 {
		t.Errorf("random fill: pgsteal %d pages for %d KiB in zram", random.pgsteal, random.orig>>10)
	}
}

// A victim the OOM killer ends is the trial's outcome: the trial is ok,
// loads, the victim's result carries the marker, and the analysis counts
// a failed session (survival 0 for it) while the other victim's latencies
// stand. The doomed victim's allocation probe (64M per request) exceeds
// its step's memory.max (48M) with no swap, so its first request kills it.
func TestOOMKilledVictimIsAnOutcome(t *testing.T) {
	if vmtest.Run(t, vmtest.Options{CPUs: 2, MemMB: 512, Timeout: 5 * time.Minute}) {
		r, err := trial.Load(filepath.Join(vmtest.OutDir(t), "trial"))
		if err != nil {
			t.Fatalf("copied-back trial does not load on the host: %v", err)
		}
		tr, err := analysis.FromRaw(&r)
		if err != nil {
			t.Fatalf("analysis refused the trial: %v", err)
		}
		for m, want := range map[string]float64{"doomed.survived": 0, "chat.survived": 1, "victim.survived": 0.5} {
			if got, ok := tr.Metrics[m]; !ok || got != want {
				t.Errorf("%s = %v (present %v), want %v", m, got, ok, want)
			}
		}
		if _, ok := tr.Metrics["chat.p99_ms"]; !ok {
			t.Error("the surviving victim has no p99")
		}
		if _, ok := tr.Metrics["doomed.p99_ms"]; ok {
			t.Error("the killed victim has a p99")
		}
		return
	}
	spec := trial.ExampleSpec()
	spec.ID = "oom"
	spec.Duration = trial.Duration(3 * time.Second)
	spec.Sessions[0].Steps = append(spec.Sessions[0].Steps, trial.Step{ID: "doomed", Class: trial.ClassInteractive,
		Budget: trial.Budget{MemoryHigh: 40 << 20, MemoryMax: 48 << 20}})
	spec.Victims = append(spec.Victims, trial.Victim{Name: "doomed", Kind: trial.VictimInteractive, Session: "victim", Step: "doomed",
		Interactive: &trial.InteractiveParams{Period: trial.Duration(20 * time.Millisecond), CPULoops: 10_000,
			TouchBytes: 64 << 10, WorkingSetBytes: 8 << 20, AllocProbeBytes: 64 << 20}})
	r := guestTrial(t, spec, "/out/trial")
	d := r.Manifest.Victims[1]
	t.Logf("doomed: %+v", d)
	if !d.OOMKilled || d.Signal != "killed" || d.Histogram != "" || d.Count != 0 {
		t.Errorf("doomed victim result %+v, want oom_killed, signal killed, no histogram", d)
	}
	ev, err := cgroupfs.ParseFlatKeyed("memory.events", strings.NewReader(r.After.Cgroups[trial.StepPath("victim", "doomed")]["memory.events"]))
	if err != nil || ev["oom_kill"] < 1 {
		t.Errorf("doomed step's memory.events oom_kill = %d (%v), want >= 1", ev["oom_kill"], err)
	}
	c := r.Manifest.Victims[0]
	if c.OOMKilled || c.Count == 0 || c.AllocHistogram != "" {
		t.Errorf("surviving victim result %+v", c)
	}
	fmt.Printf("chat p99 %d us next to an OOM-killed victim\n", r.Merged("chat").ValueAtQuantile(99))
}
