package scenario

// rawFile is the TOML document as written, every leaf lenient (see
// fields.go). Field names here are the schema; SCHEMA.md documents them.
type rawFile struct {
	Name           Str     `toml:"name"`
	Description    Str     `toml:"description"`
	Kernel         Str     `toml:"kernel"`
	Seed           Int     `toml:"seed"`
	Repetitions    Int     `toml:"repetitions"`
	Configurations StrList `toml:"configurations"`
	MemoryMode     Str     `toml:"memory_mode"`
	MemoryModes    StrList `toml:"memory_modes"`
	Solo           Bool    `toml:"solo"`

	Guest  rawGuest  `toml:"guest"`
	Timing rawTiming `toml:"timing"`

	Budgets struct {
		Victim    rawBudget `toml:"victim"`
		Neighbour rawBudget `toml:"neighbour"`
	} `toml:"budgets"`

	Scheduler rawProcess `toml:"scheduler"`
	Daemon    rawProcess `toml:"daemon"`

	Victims    []rawWorkload `toml:"victims"`
	Neighbours []rawWorkload `toml:"neighbours"`

	Sweep rawSweep `toml:"sweep"`
}

type rawGuest struct {
	Mem      Size    `toml:"mem"`
	CPUs     Int     `toml:"cpus"`
	Swap     Str     `toml:"swap"`
	Packages StrList `toml:"packages"`
}

type rawTiming struct {
	Warmup      Dur `toml:"warmup"`
	Duration    Dur `toml:"duration"`
	Timeout     Dur `toml:"timeout"`
	SampleEvery Dur `toml:"sample_every"`
}

type rawBudget struct {
	CPUWeight  Int  `toml:"cpu_weight"`
	CPUMax     Str  `toml:"cpu_max"`
	MemoryHigh Size `toml:"memory_high"`
	MemoryMax  Size `toml:"memory_max"`
	PidsMax    Int  `toml:"pids_max"`
}

type rawProcess struct {
	Args       StrList `toml:"args"`
	Config     Str     `toml:"config"`
	ConfigFile Str     `toml:"config_file"`
	Ready      Str     `toml:"ready"`
}

// rawWorkload carries the parameters of every kind; kinds.go says which
// apply to which kind, and a parameter set on the wrong kind is an error.
type rawWorkload struct {
	Name  Str `toml:"name"`
	Kind  Str `toml:"kind"`
	Set   Str `toml:"set"`
	Class Str `toml:"class"`

	// interactive, tool_burst
	Period   Dur `toml:"period"`
	CPULoops Int `toml:"cpu_loops"`
	// interactive
	Touch      Size `toml:"touch"`
	WorkingSet Size `toml:"working_set"`
	Idle       Dur  `toml:"idle"`
	AllocProbe Size `toml:"alloc_probe"`
	// tool_burst
	Children Int  `toml:"children"`
	Parallel Int  `toml:"parallel"`
	Alloc    Size `toml:"alloc"`
	// trace
	Trace    Str   `toml:"trace"`
	Compress Float `toml:"compress"`
	MemScale Float `toml:"mem_scale"`
	MaxSteps Int   `toml:"max_steps"`
	// agents
	Traces  StrList `toml:"traces"`
	Count   Int     `toml:"count"`
	Stagger Dur     `toml:"stagger"`
	// cpu_spin, memory_blowup
	Threads Int `toml:"threads"`
	// fork_storm
	Rate        Float `toml:"rate"`
	Concurrency Int   `toml:"concurrency"`
	// memory_blowup
	Target  Size `toml:"target"`
	RateMem Size `toml:"rate_per_sec"`
	Chunk   Size `toml:"chunk"`
	Fill    Str  `toml:"fill"`
}
