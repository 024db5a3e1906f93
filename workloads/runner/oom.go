package runner

import (
	"fmt"
	"os"
	"strconv"
)

// The harness and the control plane it starts must outlive any memory
// crisis a trial creates: the overcommit scenario is meant to end with the
// OOM killer choosing among the workloads, and a killed runner, daemon or
// scheduler loader would lose the trial instead of recording its outcome.
// So the runner makes itself exempt from the OOM killer, its helpers (the
// daemon, the loader) inherit that, and every workload launcher gives it
// up before it starts work, so the killer weighs workloads exactly as it
// would without the harness around them.
const (
	oomScoreExempt  = -1000
	oomScoreDefault = 0
)

func setOOMScoreAdj(v int) error {
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(v)), 0); err != nil {
		return fmt.Errorf("oom_score_adj %d: %w", v, err)
	}
	return nil
}

// ResetOOMScore gives a workload launcher the OOM killer's default
// treatment back; a launcher calls it before it does any work.
func ResetOOMScore() error { return setOOMScoreAdj(oomScoreDefault) }
