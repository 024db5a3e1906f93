package trial

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentcgroup/agentcgroup/harness/stack"
	"github.com/agentcgroup/agentcgroup/internal/units"
)

func TestExampleSpecRoundTrip(t *testing.T) {
	s := ExampleSpec()
	if err := s.Validate(); err != nil {
		t.Fatalf("example spec invalid: %v", err)
	}
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"period": "20ms"`) {
		t.Errorf("durations should encode as strings, got:\n%s", b)
	}
	got, err := DecodeSpec(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Errorf("round trip changed the spec:\n got %+v\nwant %+v", got, s)
	}
}

func TestDecodeAcceptsHumanUnits(t *testing.T) {
	s := ExampleSpec()
	b, _ := json.Marshal(s)
	var m map[string]any
	json.Unmarshal(b, &m)
	sess := m["sessions"].([]any)[0].(map[string]any)
	st := sess["steps"].([]any)[0].(map[string]any)
	st["budget"].(map[string]any)["memory_high"] = "48M"
	m["duration"] = 2000000000 // integer nanoseconds
	b, _ = json.Marshal(m)
	got, err := DecodeSpec(b)
	if err != nil {
		t.Fatal(err)
	}
	if h := got.Sessions[0].Steps[0].Budget.MemoryHigh; h != 48<<20 {
		t.Errorf("memory_high = %d, want %d", h, 48<<20)
	}
	if got.Duration.D() != 2*time.Second {
		t.Errorf("duration = %v", got.Duration)
	}
}

// "max" is a budget's "no limit" but refused as a workload's size, which
// the workload would try to allocate.
func TestSpecMaxSizes(t *testing.T) {
	b, _ := ExampleSpec().Encode()
	b = []byte(strings.Replace(string(b), `"memory_max": 134217728`, `"memory_max": "max"`, 1))
	got, err := DecodeSpec(b)
	if err != nil {
		t.Fatalf("memory_max \"max\" refused: %v", err)
	}
	if m := got.Sessions[0].Steps[0].Budget.MemoryMax; m != units.Max {
		t.Errorf("memory_max = %d, want units.Max", m)
	}
	if out, _ := got.Encode(); !strings.Contains(string(out), `"memory_max": "max"`) {
		t.Errorf("max does not encode as \"max\":\n%s", out)
	}
	b = []byte(strings.Replace(string(b), `"touch_bytes": 262144`, `"touch_bytes": "max"`, 1))
	if _, err := DecodeSpec(b); err == nil || !strings.Contains(err.Error(), `victims[0].interactive.touch_bytes: "max" is not a size here`) {
		t.Errorf("touch_bytes \"max\": %v", err)
	}
}

func TestDecodeRejectsUnknownField(t *testing.T) {
	b, _ := ExampleSpec().Encode()
	b = []byte(strings.Replace(string(b), `"seed"`, `"sede"`, 1))
	_, err := DecodeSpec(b)
	if err == nil || !strings.Contains(err.Error(), "sede") {
		t.Fatalf("want unknown field error naming sede, got %v", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	s := ExampleSpec()
	s.Stack.Name = "fast"
	s.Duration = 0
	s.Victims[0].Step = "nope"
	s.Neighbours[0].CPUSpin.Threads = 0
	s.Sessions[0].Steps[0].Budget.MemoryHigh = 256 << 20 // above memory_max
	s.Sessions[1].Steps[0].Budget.CPUMax = "50000"
	err := s.Validate()
	if err == nil {
		t.Fatal("invalid spec accepted")
	}
	for _, want := range []string{
		`configuration "fast"`, "duration", `victims[0].step "nope"`,
		"neighbours[0].cpu_spin.threads", "memory_high", "cpu_max",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

// A spec's stack must be a row of the table, a policy source needs a
// policy, and helper adjustments only for helpers the stack starts.
func TestValidateStackIsTheTable(t *testing.T) {
	s := ExampleSpec()
	s.Stack = stack.MustLookup("joint", stack.MemMainline)
	s.Stack.Coupled = false
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "coupled") {
		t.Fatalf("joint without coupling: got %v", err)
	}
	s.Stack = stack.MustLookup("joint", stack.MemMainline)
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "policy TOML") {
		t.Fatalf("joint without a policy: got %v", err)
	}
	s.Policy = "[daemon]\n"
	if err := s.Validate(); err != nil {
		t.Fatalf("joint with a policy: %v", err)
	}
	s.Stack = stack.MustLookup("baseline", "")
	s.Policy = ""
	s.Daemon = &Process{}
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "runs no daemon") {
		t.Fatalf("baseline with a daemon adjustment: got %v", err)
	}
	b, _ := json.Marshal(stack.Config{Name: "cpu-only", Scheduler: stack.SchedNone, Policy: stack.PolicyNone, Memory: stack.MemStatic})
	var c stack.Config
	if err := json.Unmarshal(b, &c); err == nil {
		t.Fatal("a cpu-only stack without the scheduler decoded")
	}
}

func TestValidateSoloHasNoNeighbours(t *testing.T) {
	s := ExampleSpec()
	s.Solo = true
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "solo") {
		t.Fatalf("solo with neighbours: got %v", err)
	}
	s.Neighbours = nil
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateMemoryWorkloadParams(t *testing.T) {
	s := ExampleSpec()
	s.Victims[0].Interactive.Idle = Duration(time.Second)
	s.Victims[0].Interactive.AllocProbeBytes = 1 << 20
	s.Neighbours[0] = Neighbour{Name: "hog", Kind: NeighbourMemoryBlowup, Session: "noisy", Step: "spin",
		MemoryBlowup: &MemoryBlowupParams{TargetBytes: 64 << 20, Fill: FillRandom, Threads: 2}}
	if err := s.Validate(); err != nil {
		t.Fatalf("valid params refused: %v", err)
	}
	s.Victims[0].Interactive.Idle = s.Duration
	s.Victims[0].Interactive.AllocProbeBytes = 100
	s.Neighbours[0].MemoryBlowup.Fill = "zero"
	s.Neighbours[0].MemoryBlowup.Threads = -1
	err := s.Validate()
	for _, want := range []string{"victims[0].interactive.idle", "alloc_probe_bytes", `memory_blowup.fill: "zero"`, "memory_blowup.threads: -1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}
