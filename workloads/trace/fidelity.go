package trace

import (
	"time"

	"github.com/agentcgroup/agentcgroup/harness/trial"
)

// Expected is what a step's recording says it uses once scaled, with the
// recorded samples split among the calls in flight as Plan splits them.
// A nil field is not in the recording.
type Expected struct {
	// PeakBytes is the highest recorded memory above the call's start,
	// times mem_scale.
	PeakBytes *float64
	// CPUUsec is the recorded CPU time across the call (each sample's
	// CPU share over its part of the call), divided by compress.
	CPUUsec *float64
}

// Usage is what a replayed step used; a nil field was not measured.
type Usage struct {
	Source    string // trial.FidelityCgroup or trial.FidelityProcess
	PeakBytes *float64
	CPUUsec   *float64
	// Report is what the step process said as it ended; nil if it
	// said nothing (it was killed, or failed before running).
	Report *StepReport
}

// MinCheckCPU is the least recorded CPU time a step needs for its CPU
// time to be checked. After a step has spent its budget its process still
// idles out its last segment and exits, which it cannot count towards the
// budget because it comes after it: under TCG on a loaded host that took
// 15 to 60 ms per step, and one slice of the spin can run over by a
// further 20 ms, so below about a second these alone exceed 10%.
const MinCheckCPU = time.Second

// Check compares a step's use with its recording.
//
// A step cannot use less than its own process does, so what the
// recording asks for is only checked when it is more than that. For
// memory that is what the process held before the step allocated any
// (about 5 MiB in a guest; its runtime grows by at most a quarter of a
// MiB after that). For CPU it is everything the step used other than
// spinning to its budget, its process's start and exit and faulting in
// its memory, and at least MinCheckCPU. Under TCG the start takes 0.1 to
// 0.6 s, depending on the host's load, and faulting in memory about 60 ms
// per MiB, so the recorded CPU of most calls, and of memory-heavy calls,
// is below it. These costs are measured per step rather than assumed, so
// every step that can be checked is, on a host of any speed and load.
func Check(e Expected, u Usage) trial.StepFidelity {
	var memFloor float64
	cpuFloor := float64(MinCheckCPU.Microseconds())
	if u.Report != nil {
		memFloor = float64(u.Report.OwnBytes)
		if u.CPUUsec != nil {
			cpuFloor = max(cpuFloor, *u.CPUUsec-float64(u.Report.Spun.Microseconds()))
		}
	}
	return trial.StepFidelity{
		Source: u.Source,
		Mem:    trial.Compare(e.PeakBytes, u.PeakBytes, memFloor),
		CPU:    trial.Compare(e.CPUUsec, u.CPUUsec, cpuFloor),
	}
}
