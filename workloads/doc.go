// Package workloads groups the guest-side workloads of the evaluation:
// victims (load/latency-measured: victim, trace), noisy neighbours
// (neighbour), their shared primitives (load, latency) and the in-guest
// trial runner (runner). cmd/agentwork exposes all of them as one static
// binary so each workload can be started inside its own step cgroup.
package workloads
