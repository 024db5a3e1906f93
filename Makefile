# AgentCgroup. See README.md for the two commands most people need.
SHELL := /bin/sh
GO ?= go
export CGO_ENABLED := 0
SCENARIO ?= smoke
AGENTBENCH := $(GO) run ./cmd/agentbench

.PHONY: all build setup setup-bpf kernels test test-unit eval figures nightly generate bench-vm kernel-patched clean-cache

all: build

build:
	$(GO) build ./...

# Host packages (qemu, busybox-static). Installs with apt as root, otherwise
# prints the command to run.
setup:
	scripts/setup-host.sh

setup-bpf:
	scripts/setup-host.sh --bpf

# Guest kernels named in vmimages/kernels.toml, fetched and verified into the cache.
kernels: setup
	$(AGENTBENCH) kernel fetch

test: setup kernels
	$(GO) vet ./...
	$(GO) test -p 1 -timeout 80m ./...

test-unit:
	$(GO) test -short ./...

eval: setup kernels
	$(AGENTBENCH) eval scenarios/$(SCENARIO).toml

bench-vm: setup kernels
	$(GO) test -run '^$$' -bench BenchmarkBootToCommand -benchtime 5x ./harness/lab/

# Rebuild BPF objects and bindings from C (needs clang-19, bpftool).
generate: setup-bpf
	$(GO) generate ./bpf/...
