package guest

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Init is the guest's PID 1. It never returns: it powers the guest off.
func Init() {
	console := openConsole()
	logf := func(format string, a ...any) { fmt.Fprintf(console, "agentinit: "+format+"\n", a...) }
	status := &statusWriter{}

	if err := mountAll(); err != nil {
		logf("%v", err)
	}
	out := os.Stdout
	if hvc, err := waitOpen("/dev/hvc0", os.O_WRONLY); err == nil {
		out = hvc
		rawOutput(hvc)
	} else {
		logf("command output falls back to the console: %v", err)
		out = console
	}
	if p, err := openPort(StatusPort); err == nil {
		status.w = p
	} else {
		logf("%v", err)
	}
	for _, err := range setupSystem() {
		logf("%v", err)
	}

	code := runJob(out, status, logf)
	killOthers()
	n, err := shipOut()
	if err != nil {
		status.send(Event{Event: "error", Error: "shipping /out: " + err.Error()})
	}
	out.Sync()
	drain(out)
	status.send(Event{Event: "done", ExitCode: code, OutBytes: n})
	unix.Sync()
	// RESTART rather than POWER_OFF: it needs no ACPI, and the host runs
	// qemu with -no-reboot so a restart ends the VM.
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}

func runJob(out *os.File, status *statusWriter, logf func(string, ...any)) int {
	b, err := os.ReadFile(JobPath)
	if err != nil {
		status.send(Event{Event: "error", Error: "no job: " + err.Error()})
		return ExitCannotRun
	}
	var job Job
	if err := json.Unmarshal(b, &job); err != nil || len(job.Argv) == 0 {
		status.send(Event{Event: "error", Error: fmt.Sprintf("bad job %s: %v", JobPath, err)})
		return ExitCannotRun
	}
	path, err := exec.LookPath(job.Argv[0])
	if err != nil {
		status.send(Event{Event: "error", Error: fmt.Sprintf("command not found in the guest: %s (PATH=%s)", job.Argv[0], os.Getenv("PATH"))})
		return ExitNotFound
	}
	cmd := exec.Command(path, job.Argv[1:]...)
	cmd.Args[0] = job.Argv[0]
	cmd.Env = append(os.Environ(), job.Env...)
	cmd.Dir = job.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/root"
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Own session so a job that leaves children behind can be reaped.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	start := time.Now()
	status.send(Event{Event: "start"})
	if err := cmd.Start(); err != nil {
		status.send(Event{Event: "error", Error: fmt.Sprintf("cannot run %s: %v", job.Argv[0], err)})
		return ExitCannotRun
	}
	err = cmd.Wait()
	ev := Event{Event: "exit", RunNs: time.Since(start).Nanoseconds()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		ev.ExitCode = ee.ExitCode()
		if ws.Signaled() {
			ev.Signal = ws.Signal().String()
			ev.ExitCode = 128 + int(ws.Signal())
		}
	default:
		logf("wait: %v", err)
		ev.ExitCode = ExitCannotRun
	}
	status.send(ev)
	return ev.ExitCode
}

func mountAll() error {
	type m struct{ src, dst, fstype, data string }
	mounts := []m{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", ""},
		{"tmpfs", "/dev/shm", "tmpfs", "mode=1777"},
		{"devpts", "/dev/pts", "devpts", ""},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", "nsdelegate,memory_recursiveprot"},
		{"bpf", "/sys/fs/bpf", "bpf", ""},
		{"debugfs", "/sys/kernel/debug", "debugfs", ""},
		{"tracefs", "/sys/kernel/tracing", "tracefs", ""},
	}
	var errs []error
	for _, mt := range mounts {
		if err := os.MkdirAll(mt.dst, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unix.Mount(mt.src, mt.dst, mt.fstype, 0, mt.data); err != nil && err != unix.EBUSY {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", mt.fstype, mt.dst, err))
		}
	}
	// /run and /tmp stay on the initramfs root, which is already in RAM: a
	// tmpfs over /run would hide the job file that came in the initrd.
	os.MkdirAll("/tmp", 0o1777)
	return errors.Join(errs...)
}

// setupSystem prepares what every job expects; failures are reported, not
// fatal, so a test can still observe the broken state.
func setupSystem() []error {
	var errs []error
	os.Setenv("PATH", BinDir+":/usr/sbin:/usr/bin:/sbin:/bin")
	os.Setenv("HOME", "/root")
	os.MkdirAll("/root", 0o700)
	os.MkdirAll(OutDir, 0o755)
	if b, err := os.ReadFile(ModuleList); err == nil {
		for _, name := range strings.Fields(string(b)) {
			if err := loadModule(filepath.Join(ModuleDir, name)); err != nil {
				errs = append(errs, fmt.Errorf("module %s: %w", name, err))
			}
		}
	}
	for _, c := range []string{"cpu", "memory", "pids", "io", "cpuset"} {
		if err := os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+"+c), 0); err != nil {
			errs = append(errs, fmt.Errorf("enabling the %s controller at the cgroup root: %w", c, err))
		}
	}
	if err := armBandwidthKey(); err != nil {
		errs = append(errs, fmt.Errorf("arming CFS bandwidth control at boot: %w", err))
	}
	if err := loopbackUp(); err != nil {
		errs = append(errs, fmt.Errorf("bringing up lo: %w", err))
	}
	unix.Sethostname([]byte("agentcgroup-guest"))
	if err := waitHighResTimers(3 * time.Second); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// waitHighResTimers waits, up to limit, until the kernel has switched to
// high-resolution timers. It boots on the early TSC clocksource, which
// cannot drive them, and switches about a second later once the TSC is
// calibrated; a job that starts sooner (a quiet host boots a guest in
// under two seconds) would have its first sleeps rounded to the 4 ms tick.
func waitHighResTimers(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var res unix.Timespec
		if err := unix.ClockGetres(unix.CLOCK_MONOTONIC, &res); err != nil {
			return fmt.Errorf("clock_getres: %w", err)
		}
		if res.Nano() == 1 {
			return nil
		}
		if time.Now().After(deadline) {
			cs, _ := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
			return fmt.Errorf("high-resolution timers inactive %v after init (clocksource %s, resolution %d ns): sleeps are rounded to the tick",
				limit, strings.TrimSpace(string(cs)), res.Nano())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// KeysCgroup is an empty cgroup that holds a CPU quota for the guest's
// whole life.
const KeysCgroup = "/sys/fs/cgroup/guest-keys"

// armBandwidthKey turns on the kernel's CFS bandwidth static key while the
// guest is still quiet. The first cpu.max quota anywhere flips that key,
// which rewrites the scheduler's hot paths; under multi-threaded TCG the
// other vCPU sometimes goes on running the old translation of a patched
// site and dies of an int3 Oops. With the key armed here, a job's own
// cpu.max writes only bump its count and patch nothing. The quota (a whole
// CPU per period) never throttles: no task ever joins the cgroup.
func armBandwidthKey() error {
	if err := os.Mkdir(KeysCgroup, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.WriteFile(filepath.Join(KeysCgroup, "cpu.max"), []byte("100000 100000"), 0)
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if err == unix.EEXIST {
		return nil
	}
	return err
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// killOthers ends whatever the job left running so /out stops changing.
func killOthers() {
	unix.Kill(-1, unix.SIGKILL)
	for {
		if _, err := unix.Wait4(-1, nil, 0, nil); err == unix.ECHILD {
			return
		}
	}
}

// shipOut streams /out as a tar through its port; the host unpacks it.
func shipOut() (int64, error) {
	port, err := openPort(OutPort)
	if err != nil {
		return 0, err
	}
	defer port.Close()
	cw := &counter{w: port}
	tw := tar.NewWriter(cw)
	err = filepath.WalkDir(OutDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(OutDir, p)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		if info.Mode()&fs.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = rel
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if cerr := tw.Close(); err == nil {
		err = cerr
	}
	return cw.n, err
}

type counter struct {
	w io.Writer
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// openPort finds a virtio-serial port by the name the host gave it.
func openPort(name string) (*os.File, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		ents, _ := os.ReadDir("/sys/class/virtio-ports")
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join("/sys/class/virtio-ports", e.Name(), "name"))
			if err == nil && strings.TrimSpace(string(b)) == name {
				return waitOpen("/dev/"+e.Name(), os.O_WRONLY)
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("virtio-serial port %q not found", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitOpen(path string, flag int) (*os.File, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		f, err := os.OpenFile(path, flag, 0)
		if err == nil || time.Now().After(deadline) {
			return f, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func openConsole() *os.File {
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		return f
	}
	return os.Stderr
}

// rawOutput stops the tty turning "\n" into "\r\n", so the host receives
// the job's bytes unchanged.
func rawOutput(f *os.File) {
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		return
	}
	t.Oflag &^= unix.OPOST
	unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
}

// drain waits until a tty has transmitted what was written to it.
func drain(f *os.File) {
	unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1)
}

type statusWriter struct{ w io.Writer }

func (s *statusWriter) send(ev Event) {
	if s.w == nil {
		return
	}
	ev.UptimeNs = uptimeNs()
	b, _ := json.Marshal(ev)
	s.w.Write(append(b, '\n'))
}

func uptimeNs() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return ts.Nano()
}
