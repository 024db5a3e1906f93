// Command agentinit is the guest's /init: it prepares the guest, runs the
// job the host sent, ships /out back and powers the guest off.
package main

import (
	"fmt"
	"os"

	"github.com/agentcgroup/agentcgroup/harness/guest"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "agentinit: this is the guest's /init and runs only as PID 1 inside a VM")
		os.Exit(2)
	}
	guest.Init()
}
