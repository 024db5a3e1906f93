package runner

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// setupZram makes a zram swap device of mb MiB so reclaim under memory.high
// has somewhere to put anonymous pages. It uses the kernel's zram module and
// busybox's mkswap/swapon.
func setupZram(mb int) (string, error) {
	if _, err := os.Stat("/sys/class/zram-control"); err != nil {
		if out, err := exec.Command("modprobe", "zram", "num_devices=0").CombinedOutput(); err != nil {
			return "", fmt.Errorf("modprobe zram: %v: %s (the guest kernel needs CONFIG_ZRAM)", err, strings.TrimSpace(string(out)))
		}
	}
	dev := "zram0"
	if _, err := os.Stat("/sys/block/zram0"); err != nil {
		b, err := os.ReadFile("/sys/class/zram-control/hot_add")
		if err != nil {
			return "", fmt.Errorf("zram hot_add: %v", err)
		}
		dev = "zram" + strings.TrimSpace(string(b))
	}
	if err := os.WriteFile("/sys/block/"+dev+"/disksize", []byte(fmt.Sprintf("%dM", mb)), 0); err != nil {
		return "", fmt.Errorf("zram disksize: %v", err)
	}
	for _, argv := range [][]string{{"mkswap", "/dev/" + dev}, {"swapon", "/dev/" + dev}} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return fmt.Sprintf("%s %dM", dev, mb), nil
}
