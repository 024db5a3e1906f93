package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/guest"
	"github.com/agentcgroup/agentcgroup/harness/vm"
)

// Accel picks the accelerator: AGENTBENCH_ACCEL forces one; otherwise KVM
// when a probe boot under it succeeds (nested setups can open /dev/kvm yet
// fail to run Linux), else TCG. The probe's verdict is cached per host boot.
func (e *Env) Accel(ctx context.Context) (string, error) {
	e.accelOnce.Do(func() { e.accel, e.accelErr = e.pickAccel(ctx) })
	return e.accel, e.accelErr
}

func (e *Env) pickAccel(ctx context.Context) (string, error) {
	switch v := os.Getenv("AGENTBENCH_ACCEL"); v {
	case "kvm", "tcg":
		return v, nil
	case "":
	default:
		return "", fmt.Errorf("AGENTBENCH_ACCEL=%q: want kvm or tcg", v)
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "tcg", nil
	}
	f.Close()
	bootID, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	cacheFile := filepath.Join(e.CacheDir, "accel", strings.TrimSpace(string(bootID))+"-"+e.Kernel.Key[:12]+".json")
	var cached struct{ Accel string }
	if b, err := os.ReadFile(cacheFile); err == nil && json.Unmarshal(b, &cached) == nil && cached.Accel != "" {
		return cached.Accel, nil
	}
	accel := "tcg"
	if e.probeKVM(ctx) {
		accel = "kvm"
	}
	os.MkdirAll(filepath.Dir(cacheFile), 0o755)
	b, _ := json.Marshal(map[string]string{"Accel": accel})
	os.WriteFile(cacheFile, b, 0o644)
	return accel, nil
}

func (e *Env) probeKVM(ctx context.Context) bool {
	work, err := os.MkdirTemp("", "agentcgroup-kvmprobe-")
	if err != nil {
		return false
	}
	defer os.RemoveAll(work)
	jobJSON, _ := json.Marshal(guest.Job{Argv: []string{"true"}})
	initrd := filepath.Join(work, "initrd.cpio")
	if err := writeInitrd(initrd, e.BaseImage, nil, map[string][]byte{guest.JobPath: jobJSON}, nil); err != nil {
		return false
	}
	res, err := vm.Run(ctx, vm.Config{Kernel: e.bootImage(), Initrd: initrd, MemMB: 512, CPUs: 1,
		Accel: "kvm", Timeout: 30 * time.Second, WorkDir: work})
	return err == nil && res.ExitCode == 0
}
