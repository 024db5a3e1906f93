package main

import "github.com/agentcgroup/agentcgroup/daemon"

// schedulerLoader starts the sched_ext scheduler; nil until the scheduler
// package is wired in, so daemon.scheduler = true is refused with a message.
var schedulerLoader daemon.SchedulerLoader
