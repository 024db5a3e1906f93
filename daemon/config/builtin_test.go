package config

import (
	"testing"
)

func TestBuiltinIsMonitorOnlyWithEveryClass(t *testing.T) {
	c := Builtin()
	if !c.Daemon.MonitorOnly || c.Daemon.MemoryMode != MemoryMainline || c.Daemon.Scheduler {
		t.Fatalf("built-in daemon settings must observe only: %+v", c.Daemon)
	}
	if c.Path != BuiltinName || c.Daemon.Socket != Defaults().Daemon.Socket {
		t.Fatalf("path %q, socket %q", c.Path, c.Daemon.Socket)
	}
	for class := range Classes {
		name, p, err := c.Select(class, nil, nil)
		if err != nil || name != class || p.Class != class {
			t.Errorf("class %s: profile %q %+v %v", class, name, p, err)
		}
	}
	if Builtin() == c {
		t.Fatal("Builtin must return a fresh copy")
	}
}
