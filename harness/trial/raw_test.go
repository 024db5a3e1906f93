package trial

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/internal/fsutil"
)

// writeRaw produces a complete trial directory the way the guest runner
// does, with the given latencies (us) for the single victim.
func writeRaw(t *testing.T, lat []int64) string {
	t.Helper()
	dir := t.TempDir()
	spec := ExampleSpec()
	start := time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	lg, err := NewIntervalLog(&buf, start, "victim chat")
	if err != nil {
		t.Fatal(err)
	}
	// two intervals: first half, second half
	for i, part := range [][]int64{lat[:len(lat)/2], lat[len(lat)/2:]} {
		h := NewLatencyHistogram()
		for _, v := range part {
			if err := h.RecordValue(v); err != nil {
				t.Fatal(err)
			}
		}
		s := start.Add(time.Duration(i) * time.Second)
		if err := lg.Write(h, s, s.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fsutil.WriteFile(filepath.Join(dir, HistogramPath("chat")), buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	cgs := []string{StepPath("victim", "chat"), StepPath("noisy", "spin")}
	snap := Snapshot{Time: start, Cgroups: map[string]map[string]string{}}
	for _, c := range cgs {
		snap.Cgroups[c] = map[string]string{"memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"}
	}
	for _, f := range []string{BeforeFile, AfterFile} {
		if err := fsutil.WriteJSON(filepath.Join(dir, f), snap); err != nil {
			t.Fatal(err)
		}
	}
	if err := fsutil.WriteJSON(filepath.Join(dir, EvidenceFile), Evidence{}); err != nil {
		t.Fatal(err)
	}
	tl := `{"t_ms":0,"cgroup":"agentcgroup/sess_victim/step_chat","memory_current":1048576}` + "\n" +
		`{"t_ms":100,"cgroup":"agentcgroup/sess_victim/step_chat","memory_current":2097152,"memory_high_events":3}` + "\n"
	if err := fsutil.WriteFile(filepath.Join(dir, TimelineFile), []byte(tl)); err != nil {
		t.Fatal(err)
	}
	m := Manifest{
		Version: ManifestVer, Spec: *spec, Kernel: "7.3.4", Started: start, Finished: start.Add(3 * time.Second),
		Victims: []WorkloadResult{{Name: "chat", Kind: VictimInteractive, Cgroup: cgs[0],
			Histogram: HistogramPath("chat"), Count: int64(len(lat))}},
		Neighbours: []WorkloadResult{{Name: "spin", Kind: NeighbourCPUSpin, Cgroup: cgs[1], Count: 4}},
		Cgroups:    cgs, OK: true,
	}
	if err := fsutil.WriteJSON(filepath.Join(dir, ManifestFile), m); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadRoundTrip(t *testing.T) {
	lat := []int64{100, 200, 300, 400, 5000, 150, 250, 350, 450, 90000}
	dir := writeRaw(t, lat)
	r, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if n := len(r.Intervals["chat"]); n != 2 {
		t.Fatalf("intervals = %d, want 2", n)
	}
	h := r.Merged("chat")
	if h.TotalCount() != int64(len(lat)) {
		t.Errorf("merged count %d, want %d", h.TotalCount(), len(lat))
	}
	if mx := h.Max(); mx < 89900 || mx > 90100 {
		t.Errorf("max %d, want ~90000", mx)
	}
	if len(r.Timeline) != 2 || r.Timeline[1].MemoryHigh != 3 {
		t.Errorf("timeline %+v", r.Timeline)
	}
	if r.Manifest.Spec.Victims[0].Interactive.Period.D() != 20*time.Millisecond {
		t.Errorf("spec not carried through manifest")
	}
}

func TestLoadRejectsCountMismatch(t *testing.T) {
	dir := writeRaw(t, []int64{1, 2, 3, 4})
	var m Manifest
	if err := readJSON(filepath.Join(dir, ManifestFile), &m); err != nil {
		t.Fatal(err)
	}
	m.Victims[0].Count = 99
	fsutil.WriteJSON(filepath.Join(dir, ManifestFile), m)
	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "histogram holds 4 values, manifest count 99") {
		t.Fatalf("got %v", err)
	}
}

func TestLoadRejectsMissingFiles(t *testing.T) {
	for _, f := range []string{ManifestFile, BeforeFile, TimelineFile, EvidenceFile, HistogramPath("chat")} {
		dir := writeRaw(t, []int64{1, 2})
		os.Remove(filepath.Join(dir, f))
		if _, err := Load(dir); err == nil {
			t.Errorf("Load accepted a trial without %s", f)
		}
	}
}

func TestLoadRejectsMissingCgroupSnapshot(t *testing.T) {
	dir := writeRaw(t, []int64{1, 2})
	var m Manifest
	readJSON(filepath.Join(dir, ManifestFile), &m)
	m.Cgroups = append(m.Cgroups, "agentcgroup/sess_x/step_y")
	fsutil.WriteJSON(filepath.Join(dir, ManifestFile), m)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "sess_x") {
		t.Fatalf("got %v", err)
	}
}

// A victim the OOM killer ended has no histogram, and its trial still
// loads as ok; any other victim without one makes an ok trial suspect.
func TestLoadOOMKilledVictim(t *testing.T) {
	dir := writeRaw(t, []int64{1, 2})
	var m Manifest
	readJSON(filepath.Join(dir, ManifestFile), &m)
	m.Victims[0] = WorkloadResult{Name: "chat", Kind: VictimInteractive, Cgroup: m.Victims[0].Cgroup, ExitCode: -1, Signal: "killed", OOMKilled: true}
	fsutil.WriteJSON(filepath.Join(dir, ManifestFile), m)
	r, err := Load(dir)
	if err != nil {
		t.Fatalf("an OOM-killed victim broke the trial: %v", err)
	}
	if r.Merged("chat") != nil {
		t.Error("a killed victim has latencies")
	}
	m.Victims[0].OOMKilled, m.Victims[0].Stalled = false, true
	fsutil.WriteJSON(filepath.Join(dir, ManifestFile), m)
	if _, err := Load(dir); err != nil {
		t.Fatalf("a victim stalled past the deadline broke the trial: %v", err)
	}
	m.Victims[0].Stalled = false
	fsutil.WriteJSON(filepath.Join(dir, ManifestFile), m)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "no histogram in a trial marked ok") {
		t.Fatalf("a victim without histogram or OOM kill loaded: %v", err)
	}
}

// The allocation probe's log loads beside the latency log, and its count
// is checked like the latency log's.
func TestLoadAllocHistogram(t *testing.T) {
	dir := writeRaw(t, []int64{1, 2})
	start := time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	lg, _ := NewIntervalLog(&buf, start, "alloc")
	h := NewLatencyHistogram()
	for _, v := range []int64{500, 700, 9000} {
		h.RecordValue(v)
	}
	lg.Write(h, start, start.Add(time.Second))
	fsutil.WriteFile(filepath.Join(dir, AllocHistogramPath("chat")), buf.Bytes())
	var m Manifest
	readJSON(filepath.Join(dir, ManifestFile), &m)
	m.Victims[0].AllocHistogram, m.Victims[0].AllocCount = AllocHistogramPath("chat"), 3
	fsutil.WriteJSON(filepath.Join(dir, ManifestFile), m)
	r, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a := r.MergedAlloc("chat"); a == nil || a.TotalCount() != 3 || a.Max() < 8990 {
		t.Errorf("alloc histogram %v", a)
	}
	m.Victims[0].AllocCount = 4
	fsutil.WriteJSON(filepath.Join(dir, ManifestFile), m)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "allocation histogram holds 3 values, manifest alloc_count 4") {
		t.Fatalf("got %v", err)
	}
}
