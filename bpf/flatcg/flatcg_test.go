package flatcg

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/btf"
)

// Host-side tests: no kernel needed.

func TestConfigDefaultsAndValidation(t *testing.T) {
	c, err := (&Config{}).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Slice != 20*time.Millisecond || c.ThrashThreshold != DefaultThrashThreshold || c.ThrashPenaltyQ8 != 64 || c.Watchdog != 5*time.Second ||
		c.WakePreempt != time.Millisecond || c.MaxLead != 250*time.Millisecond {
		t.Errorf("unexpected defaults %+v", c)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{ThrashThreshold: 1001}, "thrash threshold"},
		{Config{ThrashPenaltyQ8: 300}, "would raise the weight"},
		{Config{Slice: time.Microsecond}, "slice"},
		{Config{Slice: 2 * time.Millisecond, ShortSlice: 5 * time.Millisecond}, "short slice"},
		{Config{Watchdog: time.Minute}, "watchdog"},
		{Config{BandwidthTick: time.Second}, "bandwidth tick"},
		{Config{WakePreempt: 2 * time.Second}, "wake preempt"},
		{Config{MaxLead: 5 * time.Millisecond}, "max lead"},
		{Config{MaxLead: 3 * time.Second}, "max lead"},
	} {
		_, err := tc.cfg.withDefaults()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "use") {
			t.Errorf("%+v: error %v, want one naming %q and the valid range", tc.cfg, err, tc.want)
		}
	}
}

// The generated Go types must have the sizes the BPF object's BTF says:
// stale bindings after a header change fail here, not in the kernel.
func TestGeneratedLayoutsMatchObject(t *testing.T) {
	spec, err := loadFlatcg()
	if err != nil {
		t.Fatal(err)
	}
	for name, goSize := range map[string]uintptr{
		"fcg_cgroup":     unsafe.Sizeof(flatcgFcgCgroup{}),
		"fcg_stats":      unsafe.Sizeof(flatcgFcgStats{}),
		"fcg_exit_info":  unsafe.Sizeof(flatcgFcgExitInfo{}),
		"step_policy":    unsafe.Sizeof(StepPolicy{}),
		"step_pressure":  unsafe.Sizeof(StepPressure{}),
		"fcg_pcpu_stats": unsafe.Sizeof(flatcgFcgPcpuStats{}),
	} {
		var st *btf.Struct
		if err := spec.Types.TypeByName(name, &st); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if uintptr(st.Size) != goSize {
			t.Errorf("struct %s: BTF size %d, Go size %d: run make generate", name, st.Size, goSize)
		}
	}
	if got := spec.Maps["cgroups"].ValueSize; uintptr(got) != unsafe.Sizeof(flatcgFcgCgroup{}) {
		t.Errorf("cgroups map value size %d", got)
	}
}

// The BPF default of thrash_threshold and the Go default are one number,
// the enum's, and the scale's cap is the enum's too.
func TestPenaltyDefaultFromScale(t *testing.T) {
	spec, err := loadFlatcg()
	if err != nil {
		t.Fatal(err)
	}
	var v uint32
	if err := spec.Variables["thrash_threshold"].Get(&v); err != nil {
		t.Fatal(err)
	}
	if v != DefaultThrashThreshold || v == 0 || v >= ScoreMax {
		t.Fatalf("object's thrash_threshold %d, Go default %d, scale max %d", v, DefaultThrashThreshold, ScoreMax)
	}
	var e *btf.Enum
	if err := spec.Types.TypeByName("agc_pressure", &e); err != nil {
		t.Fatalf("enum agc_pressure not in the object's BTF: %v", err)
	}
	vals := map[string]uint64{}
	for _, ev := range e.Values {
		vals[ev.Name] = ev.Value
	}
	if vals["AGC_PRESSURE_PENALTY"] != uint64(DefaultThrashThreshold) || vals["AGC_PRESSURE_MAX"] != uint64(ScoreMax) {
		t.Fatalf("BTF enum %v disagrees with the Go constants", vals)
	}
	if !(vals["AGC_PRESSURE_THROTTLE"] <= vals["AGC_PRESSURE_PENALTY"] && vals["AGC_PRESSURE_PENALTY"] <= vals["AGC_PRESSURE_FREEZE"]) {
		t.Fatalf("defaults out of order (want throttle <= penalty <= freeze): %v", vals)
	}
}

func TestPatchOpsWritesFlagsAndTimeout(t *testing.T) {
	spec, err := loadFlatcg()
	if err != nil {
		t.Fatal(err)
	}
	ms := spec.Maps["agent_flatcg"]
	if err := patchOps(ms, map[string]uint64{"flags": opsEnqLast | opsSwitchPartial, "timeout_ms": 1234}); err != nil {
		t.Fatal(err)
	}
	data := ms.Contents[0].Value.([]byte)
	st := ms.Value.(*btf.Struct)
	got := map[string]uint64{}
	for _, m := range st.Members {
		switch m.Name {
		case "flags":
			got[m.Name] = binary.NativeEndian.Uint64(data[m.Offset.Bytes():])
		case "timeout_ms":
			got[m.Name] = uint64(binary.NativeEndian.Uint32(data[m.Offset.Bytes():]))
		}
	}
	if got["flags"] != opsEnqLast|opsSwitchPartial || got["timeout_ms"] != 1234 {
		t.Errorf("patched values %v", got)
	}
	if err := patchOps(ms, map[string]uint64{"no_such_member": 1}); err == nil {
		t.Error("patching an unknown member succeeded")
	}
}

func TestExitInfoNames(t *testing.T) {
	for kind, want := range map[int32]string{1024: "error", 1025: "error (BPF)", 64: "unregistered", 7: "kind 7"} {
		if got := (ExitInfo{Kind: kind}).KindName(); got != want {
			t.Errorf("kind %d: %q, want %q", kind, got, want)
		}
	}
	if got := cString([]int8{'a', 'b', 0, 'c'}); got != "ab" {
		t.Errorf("cString = %q", got)
	}
}
