// Package vm runs one guest under qemu: it assembles the command line,
// streams the job's output, follows the guest's status port, and turns
// panics, hangs and crashes into errors that show the console.
package vm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/guest"
)

// Config describes one boot.
type Config struct {
	Kernel  string // bzImage
	Initrd  string // base image with the job archive appended
	MemMB   int
	CPUs    int
	Accel   string // "kvm" or "tcg"
	Timeout time.Duration
	Stdout  io.Writer // job output; nil discards
	WorkDir string    // console log, status and out tar land here
	Append  string    // extra kernel command line
}

// Result is what one boot produced.
type Result struct {
	ExitCode      int
	Events        []guest.Event
	BootToCommand time.Duration // qemu start -> job start, host clock
	Run           time.Duration // job run time, guest clock
	Total         time.Duration
	ConsoleLog    string
	OutTar        string // tar of the guest's /out
	OutComplete   bool
	Warnings      []string // guest-side problems after the job started
	// VCPU is the host's treatment of the vCPU threads from the job's
	// start to its end (the last reading before qemu exited).
	VCPU VCPUTime
}

// Qemu is the emulator binary.
const Qemu = "qemu-system-x86_64"

// Available reports whether qemu can be run, with the fix if not.
func Available() error {
	if _, err := exec.LookPath(Qemu); err != nil {
		return fmt.Errorf("%s not found: run `make setup` (installs qemu-system-x86) or `sudo apt-get install qemu-system-x86`", Qemu)
	}
	return nil
}

// Version returns qemu's version line, for provenance.
func Version() string {
	out, err := exec.Command(Qemu, "--version").Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return line
}

func (c Config) args() []string {
	accel := "kvm"
	cpu := "host"
	if c.Accel != "kvm" {
		accel, cpu = "tcg,thread=multi", "max"
	}
	// no_timer_check: emulated timers are slow enough under TCG that the
	// IO-APIC timer check can fail and panic the boot.
	cmdline := "console=ttyS0 quiet panic=-1 oops=panic no_timer_check mitigations=off random.trust_cpu=on 8250.nr_uarts=1 " + c.Append
	return []string{
		// debug-threads names the vCPU threads ("CPU 0/TCG"), so the host
		// can tell how long they waited for a CPU.
		"-name", "agentcgroup,debug-threads=on",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-accel", accel, "-cpu", cpu,
		"-m", strconv.Itoa(c.MemMB), "-smp", strconv.Itoa(c.CPUs),
		"-kernel", c.Kernel, "-initrd", c.Initrd,
		"-append", strings.TrimSpace(cmdline),
		"-serial", "file:" + filepath.Join(c.WorkDir, "console.log"),
		"-device", "virtio-serial-pci,id=vs0",
		"-chardev", "stdio,id=cmdout,signal=off",
		"-device", "virtconsole,chardev=cmdout",
		"-chardev", "file,id=status,path=" + filepath.Join(c.WorkDir, "status.jsonl"),
		"-device", "virtserialport,chardev=status,name=" + guest.StatusPort,
		"-chardev", "file,id=out,path=" + filepath.Join(c.WorkDir, "out.tar"),
		"-device", "virtserialport,chardev=out,name=" + guest.OutPort,
	}
}

// Run boots the guest and waits for it to finish, fail or time out.
func Run(ctx context.Context, c Config) (*Result, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if c.MemMB <= 0 || c.CPUs <= 0 {
		return nil, fmt.Errorf("guest needs memory and CPUs (got %d MiB, %d CPUs)", c.MemMB, c.CPUs)
	}
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	res := &Result{
		ConsoleLog: filepath.Join(c.WorkDir, "console.log"),
		OutTar:     filepath.Join(c.WorkDir, "out.tar"),
	}
	runCtx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, Qemu, c.args()...)
	cmd.Stdout = c.Stdout
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", Qemu, err)
	}
	var (
		mu      sync.Mutex
		started time.Time
	)
	done := make(chan struct{})
	eventsDone := make(chan []guest.Event)
	vcpus := &vcpuSampler{procRoot: "/proc", pid: cmd.Process.Pid}
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		vcpus.run(250*time.Millisecond, done)
	}()
	go func() {
		eventsDone <- followStatus(filepath.Join(c.WorkDir, "status.jsonl"), done, func(ev guest.Event) {
			switch ev.Event {
			case "start":
				mu.Lock()
				started = time.Now()
				mu.Unlock()
				vcpus.mark()
			case "exit":
				vcpus.end()
			}
		})
	}()
	waitErr := cmd.Wait()
	close(done)
	res.Events = <-eventsDone
	<-samplerDone
	res.VCPU = vcpus.total()
	res.Total = time.Since(start)
	mu.Lock()
	if !started.IsZero() {
		res.BootToCommand = started.Sub(start)
	}
	mu.Unlock()

	var finished, sawStart bool
	var guestErr *GuestError
	for _, ev := range res.Events {
		switch ev.Event {
		case "start":
			sawStart = true
		case "exit":
			res.Run = time.Duration(ev.RunNs)
		case "error":
			if !sawStart && guestErr == nil {
				guestErr = &GuestError{Msg: ev.Error}
			} else {
				res.Warnings = append(res.Warnings, ev.Error)
			}
		case "done":
			finished = true
			res.ExitCode = ev.ExitCode
			res.OutComplete = true
		}
	}
	tail := consoleTail(res.ConsoleLog, 25)
	if pt := panicLines(res.ConsoleLog); pt != nil {
		tail = pt
	}
	switch {
	case ctx.Err() != nil:
		return res, ctx.Err()
	case runCtx.Err() == context.DeadlineExceeded && !finished:
		return res, &HangError{Timeout: c.Timeout, Tail: tail}
	case !finished && panicked(tail):
		return res, &PanicError{Oops: firstOops(res.ConsoleLog), Tail: tail}
	case !finished:
		msg := strings.TrimSpace(stderr.String())
		if msg == "" && waitErr != nil {
			msg = waitErr.Error()
		}
		return res, &CrashError{QemuErr: msg, Tail: tail}
	case guestErr != nil:
		guestErr.ExitCode = res.ExitCode
		return res, guestErr
	}
	return res, nil
}

// followStatus tails the status file until done is closed, then reads what
// is left. A file chardev is simpler than a FIFO and cannot block qemu.
func followStatus(path string, done <-chan struct{}, onEvent func(guest.Event)) []guest.Event {
	var events []guest.Event
	var f *os.File
	var r *bufio.Reader
	var partial []byte
	read := func() {
		if f == nil {
			var err error
			if f, err = os.Open(path); err != nil {
				return
			}
			r = bufio.NewReader(f)
		}
		for {
			line, err := r.ReadBytes('\n')
			partial = append(partial, line...)
			if err != nil {
				return
			}
			var ev guest.Event
			if json.Unmarshal(partial, &ev) == nil {
				events = append(events, ev)
				onEvent(ev)
			}
			partial = partial[:0]
		}
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			read()
			if f != nil {
				f.Close()
			}
			return events
		case <-tick.C:
			read()
		}
	}
}

func consoleTail(path string, n int) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return []string{"(no console log: " + err.Error() + ")"}
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, "\r")
	}
	return lines
}

// panicLines returns the console around the last "Kernel panic" line, or
// nil: with panic=-1 the guest resets at once, so the panic line is often
// followed by a long backtrace and never by a closing marker.
func panicLines(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "Kernel panic") {
			lo, hi := max(0, i-20), min(len(lines), i+5)
			out := lines[lo:hi]
			for j := range out {
				out[j] = strings.TrimRight(out[j], "\r")
			}
			return out
		}
	}
	return nil
}

func firstOops(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "Oops:") {
			return strings.TrimRight(l, "\r")
		}
	}
	return ""
}

func panicked(tail []string) bool {
	for _, l := range tail {
		if strings.Contains(l, "Kernel panic") || strings.Contains(l, "end Kernel panic") {
			return true
		}
	}
	return false
}

// ErrNoKVM is returned by ProbeKVM when /dev/kvm cannot be used.
var ErrNoKVM = errors.New("/dev/kvm is not usable")
