package cgroupfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateID(t *testing.T) {
	for _, ok := range []string{"s1", "A-b_c.9", strings.Repeat("x", 64)} {
		if err := ValidateID("session", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "..", ".x", "-x", "a/b", "a b", "é", strings.Repeat("x", 65), "a\n"} {
		err := ValidateID("step", bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), "step id") {
			t.Errorf("%q: error %q does not say which id", bad, err)
		}
	}
}

func TestTreeNaming(t *testing.T) {
	tr := Tree{Mount: "/sys/fs/cgroup", Base: "agentcgroup"}
	st, err := tr.Step("s1", "t2")
	if err != nil {
		t.Fatal(err)
	}
	if st.Path != "/sys/fs/cgroup/agentcgroup/sess_s1/step_t2" {
		t.Fatalf("got %s", st.Path)
	}
	sid, tid, err := tr.ParseStepPath(st.Path)
	if err != nil || sid != "s1" || tid != "t2" {
		t.Fatalf("%q %q %v", sid, tid, err)
	}
	if sid, tid, err = tr.ParseStepPath("sess_a/step_b"); err != nil || sid != "a" || tid != "b" {
		t.Fatalf("%q %q %v", sid, tid, err)
	}
	for _, bad := range []string{"/sys/fs/cgroup/other/sess_a/step_b", "sess_a", "sess_a/step_b/x", "sess_/step_b", "s_a/step_b"} {
		if _, _, err := tr.ParseStepPath(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := tr.Step("s1", "../x"); err == nil {
		t.Fatal("path traversal in step id accepted")
	}
}

// fakeCgroup makes a directory that looks enough like a cgroup for the
// file-level operations.
func fakeCgroup(t *testing.T, dir string, files map[string]string) Cgroup {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, ok := files["cgroup.procs"]; !ok {
		files["cgroup.procs"] = ""
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Cgroup{Path: dir}
}

func TestScanFakeTree(t *testing.T) {
	mnt := t.TempDir()
	tr := Tree{Mount: mnt, Base: "agentcgroup"}
	fakeCgroup(t, filepath.Join(mnt, "agentcgroup/sess_a/step_1"), map[string]string{})
	fakeCgroup(t, filepath.Join(mnt, "agentcgroup/sess_a/step_2"), map[string]string{})
	fakeCgroup(t, filepath.Join(mnt, "agentcgroup/sess_b"), map[string]string{})
	fakeCgroup(t, filepath.Join(mnt, "agentcgroup/other"), map[string]string{})
	fakeCgroup(t, filepath.Join(mnt, "agentcgroup/sess_a/junk"), map[string]string{})
	sess, steps, err := tr.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(sess, ",") != "a,b" {
		t.Fatalf("sessions %v", sess)
	}
	if len(steps) != 2 || steps[0].Step != "1" || steps[1].Step != "2" || steps[0].Session != "a" {
		t.Fatalf("steps %+v", steps)
	}
	if _, _, err := (Tree{Mount: mnt, Base: "absent"}).Scan(); err != nil {
		t.Fatalf("missing root: %v", err)
	}
}

func TestKnobsOnFakeTree(t *testing.T) {
	cg := fakeCgroup(t, filepath.Join(t.TempDir(), "cg"), map[string]string{
		"memory.high":    "max\n",
		"memory.max":     "1048576\n",
		"memory.current": "12345\n",
		"cgroup.events":  "populated 1\nfrozen 0\n",
		"memory.stat":    "anon 4096\nfile 0\n",
		"cgroup.procs":   "1\n42\n",
	})
	if _, err := Open(cg.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "cgroup.procs") {
		t.Fatalf("Open on a plain dir: %v", err)
	}
	if v, err := cg.ReadLimit("memory.high"); err != nil || v != Max {
		t.Fatalf("high %d %v", v, err)
	}
	if v, err := cg.ReadLimit("memory.max"); err != nil || v != 1048576 {
		t.Fatalf("max %d %v", v, err)
	}
	if v, err := cg.ReadUint("memory.current"); err != nil || v != 12345 {
		t.Fatalf("current %d %v", v, err)
	}
	if err := cg.WriteLimit("memory.high", 1<<20); err != nil {
		t.Fatal(err)
	}
	if s, _ := cg.Read("memory.high"); s != "1048576" {
		t.Fatalf("wrote %q", s)
	}
	if err := cg.WriteLimit("memory.high", Max); err != nil {
		t.Fatal(err)
	}
	if s, _ := cg.Read("memory.high"); s != "max" {
		t.Fatalf("wrote %q", s)
	}
	ev, err := cg.Events()
	if err != nil || !ev.Populated || ev.Frozen {
		t.Fatalf("%+v %v", ev, err)
	}
	st, err := cg.FlatKeyed("memory.stat")
	if err != nil || st["anon"] != 4096 {
		t.Fatalf("%v %v", st, err)
	}
	pids, err := cg.Procs()
	if err != nil || len(pids) != 2 || pids[1] != 42 {
		t.Fatalf("%v %v", pids, err)
	}
	_, err = cg.Read("memory.swap.max")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(cg.Path, "memory.swap.max")) {
		t.Fatalf("missing knob error %v does not name the file", err)
	}
	if err := cg.Write("nope/x", "1"); err == nil || !strings.Contains(err.Error(), "nope/x") {
		t.Fatalf("write error %v does not name the file", err)
	}
	id, err := cg.ID()
	if err != nil || id == 0 {
		t.Fatalf("id %d %v", id, err)
	}
}

func TestEnableControllersOnFakeTree(t *testing.T) {
	mnt := t.TempDir()
	for _, d := range []string{mnt, filepath.Join(mnt, "a"), filepath.Join(mnt, "a/b")} {
		fakeCgroup(t, d, map[string]string{"cgroup.controllers": "cpu memory pids", "cgroup.subtree_control": "cpu\n"})
	}
	if err := EnableControllers(mnt, "a/b", "cpu", "memory"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{mnt, filepath.Join(mnt, "a"), filepath.Join(mnt, "a/b")} {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.subtree_control"))
		if string(b) != "+memory" { // a fake file just records the last write
			t.Errorf("%s: wrote %q, want only the missing controller", d, b)
		}
	}
	err := EnableControllers(mnt, "a", "rdma")
	if err == nil || !strings.Contains(err.Error(), `"rdma" is not available`) {
		t.Fatalf("unavailable controller: %v", err)
	}
	if err := EnableControllers(mnt, "../x", "cpu"); err == nil {
		// Clean("/../x") is "/x": stays below the mount, so this must fail on the missing dir.
		t.Fatal("missing directory accepted")
	}
}
