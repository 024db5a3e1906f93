package vm

import (
	"fmt"
	"testing"
)

// The int3 signature can sit far above the panic line; it must still be
// recognised, and nothing else may be.
func TestEmulatorFlake(t *testing.T) {
	flake := &PanicError{Oops: "[    7.8] Oops: int3: 0000 [#1] SMP NOPTI", Tail: []string{"RIP: 0010:__schedule+0x643/0x1080", "Kernel panic - not syncing: Fatal exception in interrupt"}}
	if _, ok := EmulatorFlake(fmt.Errorf("trial: %w", flake)); !ok {
		t.Error("int3 Oops not recognised through a wrapped error")
	}
	other := &PanicError{Oops: "Oops: general protection fault", Tail: []string{"Kernel panic - not syncing: Fatal exception"}}
	if _, ok := EmulatorFlake(other); ok {
		t.Error("a general protection fault is not an emulator flake")
	}
	if _, ok := EmulatorFlake(&HangError{}); ok {
		t.Error("a hang is not an emulator flake")
	}
}
