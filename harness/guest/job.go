// Package guest is the contract between the host's VM controller and the
// guest's /init, and /init's implementation: the job the guest runs and the
// status events it reports back.
package guest

// Paths and port names shared by host and guest.
const (
	JobPath    = "/run/agentcgroup/job.json" // in the per-boot cpio appended to the initrd
	OutDir     = "/out"                      // shipped back as a tar when the job ends
	StatusPort = "agentcgroup.status"        // virtio-serial port: JSON lines of Event
	OutPort    = "agentcgroup.out"           // virtio-serial port: tar of OutDir
	BinDir     = "/usr/local/bin"            // our static binaries
	ModuleDir  = "/lib/modules/agentcgroup"  // uncompressed modules to load at boot
	ModuleList = ModuleDir + "/load-order"   // one file name per line
)

// Job is what the guest runs once it has booted.
type Job struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env,omitempty"` // added to the default environment
	Dir  string   `json:"dir,omitempty"`
}

// Event is one status line from guest to host.
type Event struct {
	Event    string `json:"event"` // "start", "exit", "error", "done"
	UptimeNs int64  `json:"uptime_ns"`
	ExitCode int    `json:"exit_code,omitempty"`
	Signal   string `json:"signal,omitempty"`
	Error    string `json:"error,omitempty"`
	RunNs    int64  `json:"run_ns,omitempty"`
	OutBytes int64  `json:"out_bytes,omitempty"`
}

// Exit codes the guest uses for its own failures, as shells do.
const (
	ExitNotFound  = 127
	ExitCannotRun = 126
)
