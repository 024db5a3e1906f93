package flatcg

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The test binary doubles as its own workload: with FLATCG_HELPER set it
// runs a spinner or a sleeper instead of the tests, so each workload can be
// started directly inside a cgroup as a separate process.
func TestMain(m *testing.M) {
	switch os.Getenv("FLATCG_HELPER") {
	case "":
		os.Exit(m.Run())
	case "spin":
		n, _ := strconv.Atoi(os.Getenv("FLATCG_THREADS"))
		spin(max(n, 1))
	case "sleeper":
		sleeper()
	case "work":
		work()
	case "pingpong":
		pingpong()
	case "burst":
		burst()
	default:
		fmt.Fprintln(os.Stderr, "unknown FLATCG_HELPER", os.Getenv("FLATCG_HELPER"))
		os.Exit(2)
	}
}

var spinSink uint64

// spin keeps n threads busy forever and prints "ready" once all n spin:
// a goroutine that never yields only starts when it has a thread of its
// own, so n started goroutines mean n busy threads.
func spin(n int) {
	runtime.GOMAXPROCS(n)
	var started atomic.Int32
	for i := 0; i < n; i++ {
		go func() {
			if started.Add(1) == int32(n) {
				fmt.Println("ready")
			}
			x := uint64(i)
			for {
				x = x*6364136223846793005 + 1442695040888963407
				if x == 0 {
					spinSink++
				}
			}
		}()
	}
	select {}
}

// sleeper sleeps FLATCG_PERIOD_US, FLATCG_COUNT times, on one OS thread, and
// prints each wakeup's lateness in ns as a JSON array.
func sleeper() {
	runtime.LockOSThread()
	period, _ := strconv.Atoi(os.Getenv("FLATCG_PERIOD_US"))
	count, _ := strconv.Atoi(os.Getenv("FLATCG_COUNT"))
	d := time.Duration(period) * time.Microsecond
	ts := unix.NsecToTimespec(d.Nanoseconds())
	lat := make([]int64, 0, count)
	moved := 0
	for i := 0; i < count; i++ {
		before := curCPU()
		t0 := MonotonicNow()
		for {
			if err := unix.Nanosleep(&ts, nil); err != unix.EINTR {
				break
			}
		}
		lat = append(lat, int64(MonotonicNow()-t0)-d.Nanoseconds())
		if curCPU() != before {
			moved++
		}
	}
	fmt.Fprintf(os.Stderr, "sleeper: %d of %d wakeups ran on another CPU\n", moved, count)
	json.NewEncoder(os.Stdout).Encode(lat)
	os.Exit(0)
}

func envDuration(name string) time.Duration {
	return time.Duration(envInt(name)) * time.Millisecond
}

func envInt(name string) int {
	n, _ := strconv.Atoi(os.Getenv(name))
	return n
}

// work runs FLATCG_THREADS CPU-bound threads for FLATCG_DURATION_MS and
// prints the total number of work units done.
func work() {
	n, _ := strconv.Atoi(os.Getenv("FLATCG_THREADS"))
	n = max(n, 1)
	runtime.GOMAXPROCS(n)
	deadline := time.Now().Add(envDuration("FLATCG_DURATION_MS"))
	counts := make([]uint64, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := uint64(i)
			for time.Now().Before(deadline) {
				for j := 0; j < 1<<14; j++ {
					x = x*6364136223846793005 + 1442695040888963407
				}
				counts[i]++
			}
			if x == 0 {
				spinSink++
			}
		}()
	}
	wg.Wait()
	var sum uint64
	for _, c := range counts {
		sum += c
	}
	fmt.Println(sum)
	os.Exit(0)
}

// pingpong bounces a byte between two threads over blocking pipes for
// FLATCG_DURATION_MS and prints the number of round trips: every round trip
// is two wakeups, so this is scheduler-bound throughput. With
// FLATCG_BUSY_US the pinging thread computes that long before each ping,
// which makes it a producer rather than a handoff partner.
func pingpong() {
	busy := time.Duration(envInt("FLATCG_BUSY_US")) * time.Microsecond
	var a, b [2]int
	if err := unix.Pipe(a[:]); err != nil {
		panic(err)
	}
	if err := unix.Pipe(b[:]); err != nil {
		panic(err)
	}
	go func() {
		runtime.LockOSThread()
		buf := make([]byte, 1)
		for {
			if _, err := unix.Read(a[0], buf); err != nil {
				return
			}
			unix.Write(b[1], buf)
		}
	}()
	runtime.LockOSThread()
	deadline := time.Now().Add(envDuration("FLATCG_DURATION_MS"))
	buf := []byte{1}
	var trips uint64
	for time.Now().Before(deadline) {
		for start := time.Now(); time.Since(start) < busy; {
		}
		unix.Write(a[1], buf)
		unix.Read(b[0], buf)
		trips++
	}
	fmt.Println(trips)
	os.Exit(0)
}

func curCPU() int {
	var cpu uint32
	unix.Syscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), 0, 0)
	return int(cpu)
}

// cgroupRoot is where test cgroups go; the guest mounts cgroup2 here.
const cgroupRoot = "/sys/fs/cgroup"

// testTree creates a cgroup directory for the test with +cpu delegated to
// its children and removes it (killing stragglers) at cleanup.
func testTree(t testing.TB, name string) string {
	t.Helper()
	dir := filepath.Join(cgroupRoot, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	writeFile(t, filepath.Join(dir, "cgroup.subtree_control"), "+cpu")
	t.Cleanup(func() { removeTree(dir) })
	return dir
}

func mkCgroup(t testing.TB, parent, name string, weight int, delegate bool) string {
	t.Helper()
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	if weight > 0 {
		writeFile(t, filepath.Join(dir, "cpu.weight"), strconv.Itoa(weight))
	}
	if delegate {
		writeFile(t, filepath.Join(dir, "cgroup.subtree_control"), "+cpu")
	}
	return dir
}

func removeTree(dir string) {
	// children first; kill whatever still runs so rmdir can succeed
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeTree(filepath.Join(dir, e.Name()))
		}
	}
	os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	for i := 0; i < 50; i++ {
		if os.Remove(dir) == nil || os.IsNotExist(os.Remove(dir)) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeFile(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0); err != nil {
		t.Fatalf("write %q to %s: %v", s, path, err)
	}
}

// startIn starts a helper of the test binary directly inside cgroup dir.
func startIn(t testing.TB, dir, helper string, env ...string) *exec.Cmd {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatalf("open cgroup %s: %v", dir, err)
	}
	t.Cleanup(func() { f.Close() }) // must stay open until the child starts
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), append([]string{"FLATCG_HELPER=" + helper}, env...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
	cmd.Stderr = os.Stderr
	return cmd
}

// startSpinner starts a spinner with threads busy threads in dir and waits
// until all of them spin (process start-up under TCG can take seconds).
func startSpinner(t testing.TB, dir string, threads int) *exec.Cmd {
	t.Helper()
	cmd := startIn(t, dir, "spin", "FLATCG_THREADS="+strconv.Itoa(threads))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start spinner in %s: %v", dir, err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("unexpected output %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("spinner in %s: %v", dir, err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("spinner in %s not spinning after 2 minutes", dir)
	}
	return cmd
}

// cpuUsage is cpu.stat usage_usec of a cgroup, as accounted by the kernel.
func cpuUsage(t testing.TB, dir string) time.Duration {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		t.Fatalf("read cpu.stat: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		if k == "usage_usec" {
			us, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("cpu.stat usage_usec %q: %v", v, err)
			}
			return time.Duration(us) * time.Microsecond
		}
	}
	t.Fatalf("%s/cpu.stat has no usage_usec", dir)
	return 0
}

// measureUsage returns each cgroup's CPU time over window.
func measureUsage(t testing.TB, window time.Duration, dirs ...string) []time.Duration {
	t.Helper()
	before := make([]time.Duration, len(dirs))
	for i, d := range dirs {
		before[i] = cpuUsage(t, d)
	}
	time.Sleep(window)
	out := make([]time.Duration, len(dirs))
	for i, d := range dirs {
		out[i] = cpuUsage(t, d) - before[i]
	}
	return out
}

// medianShares measures n consecutive windows and returns, per cgroup, the
// median over the windows of its share of the cgroups' total CPU time. The
// median keeps a burst of host load (the guest runs under TCG on a shared
// host, which moves even the fair scheduler's ratios by 10-15% in a single
// window) from deciding the result.
func medianShares(t testing.TB, n int, window time.Duration, dirs ...string) []float64 {
	t.Helper()
	per := make([][]float64, len(dirs))
	for w := 0; w < n; w++ {
		sh := shares(measureUsage(t, window, dirs...))
		for i := range dirs {
			per[i] = append(per[i], sh[i])
		}
	}
	out := make([]float64, len(dirs))
	for i, v := range per {
		sort.Float64s(v)
		out[i] = v[len(v)/2]
		t.Logf("%s shares per window: %.3f", filepath.Base(dirs[i]), v)
	}
	return out
}

func shares(u []time.Duration) []float64 {
	var sum time.Duration
	for _, d := range u {
		sum += d
	}
	out := make([]float64, len(u))
	for i, d := range u {
		out[i] = float64(d) / float64(sum)
	}
	return out
}

// within reports whether got is within tol (relative) of want.
func within(got, want, tol float64) bool {
	return got >= want*(1-tol) && got <= want*(1+tol)
}

func loadForTest(t testing.TB, cfg Config) *Scheduler {
	t.Helper()
	s, err := Load(cfg)
	if err != nil {
		t.Fatalf("load scheduler: %v", err)
	}
	t.Cleanup(func() {
		if ei, done, err := s.Exited(); err == nil && done {
			t.Logf("scheduler exit: %v", ei)
		}
		s.Close()
	})
	return s
}

func cgid(t testing.TB, dir string) uint64 {
	t.Helper()
	id, err := CgroupID(dir)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func percentile(ns []int64, p float64) time.Duration {
	s := append([]int64(nil), ns...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	i := int(p * float64(len(s)-1))
	return time.Duration(s[i])
}

// runSleeper runs a sleeper helper in dir and returns its wakeup latencies.
func runSleeper(t testing.TB, dir string, period time.Duration, count int) []int64 {
	t.Helper()
	cmd := startIn(t, dir, "sleeper",
		"FLATCG_PERIOD_US="+strconv.FormatInt(period.Microseconds(), 10),
		"FLATCG_COUNT="+strconv.Itoa(count))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sleeper in %s: %v", dir, err)
	}
	var lat []int64
	if err := json.Unmarshal(out, &lat); err != nil {
		t.Fatalf("sleeper output %q: %v", out, err)
	}
	return lat
}
