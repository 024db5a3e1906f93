package cgroupfs

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Guest tests run as root in a fresh VM with cgroup2 at DefaultMount.

func guestTree(t *testing.T) Tree {
	tr := Tree{Mount: DefaultMount, Base: "cgfs-test"}
	if _, err := Mkdir(tr.Root().Path); err != nil {
		t.Fatal(err)
	}
	if err := EnableControllers(DefaultMount, tr.Base, "cpu", "memory", "pids"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tr.Root().RemoveAll(ctx, true); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return tr
}

func mkStep(t *testing.T, tr Tree, sid, tid string) Cgroup {
	t.Helper()
	sess, err := tr.Session(sid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Mkdir(sess.Path); err != nil {
		t.Fatal(err)
	}
	if err := EnableControllers(tr.Mount, filepath.Join(tr.Base, filepath.Base(sess.Path)), "cpu", "memory", "pids"); err != nil {
		t.Fatal(err)
	}
	st, err := tr.Step(sid, tid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Mkdir(st.Path); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestGuestStartInsideCgroupBeforeExec(t *testing.T) {
	if ranInVM(t) {
		return
	}
	tr := guestTree(t)
	st := mkStep(t, tr, "a", "1")
	ctrls, err := st.Controllers()
	if err != nil || !strings.Contains(strings.Join(ctrls, " "), "memory") || !strings.Contains(strings.Join(ctrls, " "), "cpu") {
		t.Fatalf("step controllers %v %v: EnableControllers did not reach the step", ctrls, err)
	}
	// The child reads its own membership as its first act: with
	// CLONE_INTO_CGROUP it must already be in the step.
	cmd := exec.Command("cat", "/proc/self/cgroup")
	var out strings.Builder
	cmd.Stdout = &out
	if err := st.Start(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	want := "0::/" + tr.Base + "/sess_a/step_1"
	if strings.TrimSpace(out.String()) != want {
		t.Fatalf("child saw %q, want %q", out.String(), want)
	}
	var stt syscall.Stat_t
	if err := syscall.Stat(st.Path, &stt); err != nil {
		t.Fatal(err)
	}
	if id, err := st.ID(); err != nil || id != stt.Ino {
		t.Fatalf("ID %d %v, inode %d", id, err, stt.Ino)
	}
	if err := st.Start(exec.Command("/nonexistent/binary")); err == nil || !strings.Contains(err.Error(), st.Path) {
		t.Fatalf("start of a missing binary: %v", err)
	}
}

func TestGuestKnobsAndParsers(t *testing.T) {
	if ranInVM(t) {
		return
	}
	tr := guestTree(t)
	st := mkStep(t, tr, "a", "1")
	if err := st.WriteLimit("memory.high", 64<<20); err != nil {
		t.Fatal(err)
	}
	if v, err := st.ReadLimit("memory.high"); err != nil || v != 64<<20 {
		t.Fatalf("memory.high %d %v", v, err)
	}
	if v, err := st.ReadLimit("memory.max"); err != nil || v != Max {
		t.Fatalf("memory.max %d %v", v, err)
	}
	err := st.Write("memory.high", "lots")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(st.Path, "memory.high")) {
		t.Fatalf("bad write error %v does not name the file", err)
	}
	for _, k := range []string{"memory.events", "memory.events.local", "memory.stat", "cpu.stat", "pids.events"} {
		m, err := st.FlatKeyed(k)
		if err != nil || len(m) == 0 {
			t.Errorf("%s: %v %v", k, m, err)
		}
	}
	for _, k := range []string{"memory.pressure", "cpu.pressure", "io.pressure"} {
		if _, err := st.Pressure(k); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	if _, err := (Cgroup{Path: DefaultMount}).NestedKeyed("io.stat"); err != nil {
		t.Errorf("io.stat: %v", err)
	}
}

func TestGuestFreezeKillRemove(t *testing.T) {
	if ranInVM(t) {
		return
	}
	tr := guestTree(t)
	st := mkStep(t, tr, "a", "1")
	cmd := exec.Command("sh", "-c", "sleep 60 & sleep 60")
	if err := st.Start(cmd); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := st.WaitEvents(ctx, func(e Events) bool { return e.Populated }); err != nil {
		t.Fatal(err)
	}
	if err := st.Remove(); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("Remove of a populated cgroup: %v, want ErrNotEmpty", err)
	}
	if err := st.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	if ev, _ := st.Events(); !ev.Frozen {
		t.Fatal("not frozen after Freeze")
	}
	if err := st.Unfreeze(ctx); err != nil {
		t.Fatal(err)
	}
	// populated turns true when sh enters the cgroup, before it has forked
	// the background sleep; wait for both children rather than assume it.
	var pids []int
	var err error
	for {
		pids, err = st.Procs()
		if err != nil || len(pids) >= 2 || ctx.Err() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err != nil || len(pids) < 2 {
		t.Fatalf("procs %v %v", pids, err)
	}
	// Kill while frozen: cgroup.kill works on frozen tasks too.
	if err := st.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	sess := tr.Root().Child("sess_a")
	if err := sess.RemoveAll(ctx, true); err != nil {
		t.Fatal(err)
	}
	if sess.Exists() || st.Exists() {
		t.Fatal("RemoveAll left directories")
	}
	err = <-waited
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL", err)
	}
}

func TestGuestMoveProc(t *testing.T) {
	if ranInVM(t) {
		return
	}
	tr := guestTree(t)
	a := mkStep(t, tr, "a", "1")
	b := mkStep(t, tr, "a", "2")
	cmd := exec.Command("sleep", "60")
	if err := a.Start(cmd); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if err := b.AddProc(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	pids, _ := b.Procs()
	if len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Fatalf("procs of b: %v", pids)
	}
	if err := a.Remove(); err != nil {
		t.Fatalf("a is empty now and must be removable: %v", err)
	}
	if err := (Cgroup{Path: "/sys/fs/cgroup/does-not-exist"}).AddProc(1); err == nil || !strings.Contains(err.Error(), "does-not-exist/cgroup.procs") {
		t.Fatalf("AddProc error %v does not name the file", err)
	}
}
