package cgroupfs

import (
	"os"
	"testing"
)

func inGuest(t *testing.T) bool {
	if os.Getenv("AGC5_GUEST") == "" {
		t.Skip("guest test: run through the VM lab")
	}
	return false
}
