// Package memhog is a tiny memory workload for tests: a test binary
// re-executes itself with EnvVar set and TestMain calls MaybeRun, so guest
// tests need no extra binary. Timestamps it prints are CLOCK_MONOTONIC ns,
// the clock of bpf_ktime_get_ns and of the daemon's event log.
//
// Spec (comma-separated key=value):
//
//	mode=burst  prefill=N burst=N hold=D   touch prefill (N, or "edge-M": fill the
//	                                      cgroup to M below its memory.high), print "t0 <ns>",
//	                                      touch burst page by page, print "t1 <ns>", sleep hold
//	mode=grow   chunk=N every=D total=N hold=D   add chunk every D up to total
//	mode=steady prefill=N hold=D [stopfile=P]  keep touching prefill with short CPU
//	                                      bursts until hold passes or P exists
//	mode=pauses total=N pause=D hold=D    touch N page by page; print "pause_ms <ms>" for
//	                                      every page that took at least D (a throttle
//	                                      sleep), then "pauses-done <pages>", sleep hold
//	mode=churn  prefill=N chunk=N every=D hold=D   keep prefill, then map, touch and unmap
//	                                      chunk every D until hold passes: fresh charges
//	                                      over memory.high keep the step throttled
package memhog

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentcgroup/agentcgroup/internal/units"
)

// EnvVar carries the spec to the re-executed binary.
const EnvVar = "AGENTCGROUP_MEMHOG"

// Command returns a command that runs spec in a copy of the current binary.
func Command(spec string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), EnvVar+"="+spec)
	return cmd, nil
}

// MaybeRun runs the workload and exits if EnvVar is set; otherwise it returns.
func MaybeRun() {
	spec := os.Getenv(EnvVar)
	if spec == "" {
		return
	}
	if err := run(spec); err != nil {
		fmt.Fprintln(os.Stderr, "memhog:", err)
		os.Exit(3)
	}
	os.Exit(0)
}

// Mono is CLOCK_MONOTONIC in ns.
func Mono() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// parseSize reads a size as internal/units does; "max" is no amount to
// touch.
func parseSize(s string) (int, error) {
	b, err := units.ParseBytes(s)
	if err == nil && b == units.Max {
		err = fmt.Errorf(`size "max": want an amount, e.g. "64M"`)
	}
	return int(b), err
}

func alloc(n int) ([]byte, error) {
	if n == 0 {
		return nil, nil
	}
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("mmap %d bytes: %w", n, err)
	}
	return b, nil
}

// touch writes a non-zero byte to every page so each is really charged.
func touch(b []byte, v byte) {
	for i := 0; i < len(b); i += 4096 {
		b[i] = v
	}
}

func run(spec string) error {
	kv := map[string]string{}
	for _, f := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("spec field %q: want key=value", f)
		}
		kv[k] = v
	}
	size := func(k string) (int, error) {
		if kv[k] == "" {
			return 0, nil
		}
		return parseSize(kv[k])
	}
	dur := func(k string) (time.Duration, error) {
		if kv[k] == "" {
			return 0, nil
		}
		d, err := units.ParseDuration(kv[k])
		return d.D(), err
	}
	hold, err := dur("hold")
	if err != nil {
		return err
	}
	switch kv["mode"] {
	case "burst":
		pre, err := prefill(kv["prefill"])
		if err != nil {
			return err
		}
		bn, err := size("burst")
		if err != nil {
			return err
		}
		p, err := alloc(pre)
		if err != nil {
			return err
		}
		start := Mono()
		touch(p, 1)
		if pre >= 1<<20 {
			// Fault-in cost, so a reader can estimate when the burst
			// crossed memory.high from t0 and the prefill margin.
			fmt.Printf("ns_per_mib %d\n", (Mono()-start)*(1<<20)/uint64(pre))
		}
		b, err := alloc(bn)
		if err != nil {
			return err
		}
		// Fault the burst in page by page, like a program touching fresh
		// memory, so each fault returns to user space (where the kernel
		// applies the memory.high throttle) and the fault rate matches
		// the prefill's.
		fmt.Printf("t0 %d\n", Mono())
		touch(b, 3)
		fmt.Printf("t1 %d\n", Mono())
		time.Sleep(hold)
	case "grow":
		chunk, err := size("chunk")
		if err != nil {
			return err
		}
		total, err := size("total")
		if err != nil {
			return err
		}
		every, err := dur("every")
		if err != nil {
			return err
		}
		for got := 0; got < total; got += chunk {
			b, err := alloc(chunk)
			if err != nil {
				return err
			}
			touch(b, 2)
			fmt.Printf("grown %d %d\n", got+chunk, Mono())
			time.Sleep(every)
		}
		fmt.Printf("grown-all %d\n", Mono())
		time.Sleep(hold)
	case "steady":
		pre, err := size("prefill")
		if err != nil {
			return err
		}
		p, err := alloc(pre)
		if err != nil {
			return err
		}
		end := time.Now().Add(hold)
		stop := kv["stopfile"]
		for v := byte(1); time.Now().Before(end); v++ {
			if stop != "" {
				if _, err := os.Stat(stop); err == nil {
					break
				}
			}
			touch(p, v|1)
			for spin := time.Now(); time.Since(spin) < 5*time.Millisecond; {
			}
			time.Sleep(45 * time.Millisecond)
		}
		fmt.Printf("steady-done %d\n", Mono())
	case "churn":
		// Re-touching charged pages charges nothing, so a steady working
		// set over memory.high is throttled once; fresh pages are charged
		// (and throttled) every time.
		pre, err := size("prefill")
		if err != nil {
			return err
		}
		chunk, err := size("chunk")
		if err != nil {
			return err
		}
		every, err := dur("every")
		if err != nil {
			return err
		}
		p, err := alloc(pre)
		if err != nil {
			return err
		}
		touch(p, 1)
		fmt.Printf("churning %d\n", Mono())
		for end := time.Now().Add(hold); time.Now().Before(end); time.Sleep(every) {
			b, err := alloc(chunk)
			if err != nil {
				return err
			}
			touch(b, 4)
			if err := unix.Munmap(b); err != nil {
				return err
			}
		}
	case "pauses":
		total, err := size("total")
		if err != nil {
			return err
		}
		pause, err := dur("pause")
		if err != nil {
			return err
		}
		b, err := alloc(total)
		if err != nil {
			return err
		}
		pages := 0
		for i := 0; i < len(b); i += 4096 {
			t0 := time.Now()
			b[i] = 5
			if d := time.Since(t0); d >= pause {
				fmt.Printf("pause_ms %.3f\n", float64(d)/float64(time.Millisecond))
			}
			pages++
		}
		fmt.Printf("pauses-done %d\n", pages)
		time.Sleep(hold)
	default:
		return fmt.Errorf("mode %q: use burst, grow, steady or pauses", kv["mode"])
	}
	return nil
}

// prefill resolves "edge-M" to the bytes that bring the own cgroup to M
// below its memory.high, so the burst breaches within its first M bytes.
func prefill(s string) (int, error) {
	margin, ok := strings.CutPrefix(s, "edge-")
	if !ok {
		if s == "" {
			return 0, nil
		}
		return parseSize(s)
	}
	m, err := parseSize(margin)
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, err
	}
	dir := "/sys/fs/cgroup" + strings.TrimSpace(strings.TrimPrefix(string(b), "0::"))
	read := func(k string) (int, error) {
		v, err := os.ReadFile(dir + "/" + k)
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(strings.TrimSpace(string(v)))
	}
	high, err := read("memory.high")
	if err != nil {
		return 0, fmt.Errorf("prefill %s needs a numeric memory.high: %w", s, err)
	}
	cur, err := read("memory.current")
	if err != nil {
		return 0, err
	}
	n := (high - cur - m) &^ 4095
	if n < 0 {
		return 0, fmt.Errorf("cgroup already at %d of memory.high %d: no room for prefill %s", cur, high, s)
	}
	return n, nil
}
