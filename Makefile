# AgentCgroup. See README.md for the two commands most people need.
SHELL := /bin/sh
GO ?= go
# Every binary runs in a libc-free guest, and tests ship themselves into it.
export CGO_ENABLED := 0
SCENARIO ?= smoke
RUN ?=
AGENTBENCH := $(GO) run ./cmd/agentbench

.PHONY: all build setup setup-bpf setup-kernel kernels kernel-patched test test-unit eval figures nightly \
	generate bench bench-vm bench-sched bench-reaction bench-controlplane

all: build

build:
	$(GO) build ./...

# Host packages (qemu, busybox-static). Installs with apt as root, otherwise
# prints the command to run.
setup:
	scripts/setup-host.sh

setup-bpf:
	scripts/setup-host.sh --bpf

# The runtime packages plus what building a guest kernel needs.
setup-kernel:
	scripts/setup-host.sh --kernel

# Guest kernels named in vmimages/kernels.toml, fetched and verified into the cache.
kernels: setup
	$(AGENTBENCH) kernel fetch

# Our memcg_bpf_ops kernel; a cold build takes 10-25 minutes (it prints its
# progress), then it is cached.
kernel-patched: setup-kernel
	$(AGENTBENCH) kernel fetch patched

# Unit tests and VM tests. Everything they need comes first: the host
# packages (including the kernel build's), the pinned kernels and our
# patched kernel, so a cold kernel build runs here with its progress shown
# instead of inside the first test that boots it, under that test's
# deadline. No test runs clang or bpftool (the BPF objects are committed),
# so the BPF toolchain (setup-bpf) is not needed. -p 1: guests that measure
# timing must not share the host's cores with each other.
test: setup-kernel kernels kernel-patched
	$(GO) vet ./...
	$(GO) test -p 1 -timeout 85m ./...

test-unit:
	$(GO) test -short ./...

eval: setup kernels
	$(AGENTBENCH) eval scenarios/$(SCENARIO).toml

# Regenerate report.md, summary.csv and figures/ from a run's raw data.
figures:
	@test -n "$(RUN)" || { echo "usage: make figures RUN=results/<dir>" >&2; exit 2; }
	$(AGENTBENCH) figures $(RUN)

# Short scenario compared against the committed reference run; fails on a
# significant p99 regression.
nightly: setup kernels
	rm -rf results/.nightly
	$(AGENTBENCH) eval --results results/.nightly scenarios/nightly.toml
	$(AGENTBENCH) compare --threshold 25 results/reference/nightly results/.nightly/*-nightly

# Rebuild BPF objects and bindings from C (clang-19, bpftool; vmlinux.h
# comes from the pinned kernels' BTF).
generate: setup-bpf kernels
	$(GO) generate ./bpf/...

bench-vm: setup kernels
	$(GO) test -run '^$$' -bench BenchmarkBootToCommand -benchtime 5x ./harness/lab/

# scx_agent_flatcg against the default scheduler: wakeup latency and throughput ratios.
bench-sched: setup kernels
	$(GO) test -run '^$$' -bench BenchmarkVersusDefault -benchtime 1x -v ./bpf/flatcg/

# Memory.high breach -> in-kernel pressure map update vs -> daemon action.
bench-reaction: setup kernels
	$(GO) test -run '^$$' -bench BenchmarkReactionTime -benchtime 1x ./daemon/

# Steady-state CPU of agentcgroupd (1, 10, 50 idle steps; one throttled
# step) and of scx_agent_flatcg attached and idle, as % of one vCPU over a
# window after each is ready (AGENTCGROUP_CPBENCH_WINDOW, default 15s).
bench-controlplane: setup kernels
	$(GO) test -run '^$$' -bench BenchmarkControlPlane -benchtime 1x -timeout 25m ./daemon/

# Every benchmark once (VM benchmarks boot one guest each).
bench: setup kernels
	$(GO) test -p 1 -run '^$$' -bench . -benchtime 1x ./...
