# resilienced — see README.md. Every target sets up what it needs.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
BIN     := bin

.PHONY: all build test test-short demo cluster-demo soak generate check-generate bench bench-mcp arbiter-bench bench-density deb vm-test clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/resilienced ./cmd/resilienced
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/resilientctl ./cmd/resilientctl
	CGO_ENABLED=0 $(GO) build -o $(BIN)/flaky ./examples/agents/flaky # static: no loader per start

# The test suite: every package, privileged tests included when run as root.
test:
	scripts/test.sh

# The main job: a daemon under chaos and load, with the recovery table.
demo: build
	scripts/demo.sh

# A real 3-member etcd and 3 nodes in 3 network namespaces; one node's
# daemon killed, another cut off, under 300 sessions (needs root).
cluster-demo:
	scripts/cluster-demo.sh

# Ten minutes of every fault kind at 1.5/s under 64 callers on default
# settings, then checks that nothing leaked (root; not part of `make test`).
soak: build
	scripts/soak.sh

# Regenerate the eBPF objects (needs clang-16 and libbpf-dev).
generate:
	$(GO) generate ./internal/telemetry/... ./internal/isolate/...

# Fails if the committed eBPF objects differ from what the sources give.
check-generate: generate
	@git diff --exit-code --stat -- internal/telemetry internal/isolate || \
		(echo "eBPF objects are stale: run 'make generate' and commit them" >&2; exit 1)

bench:
	scripts/bench.sh

# The MCP front door against the unix socket API and the agent called
# directly, in one run (issue #12; not part of `make test`).
bench-mcp:
	scripts/bench-mcp.sh

# The Arbiter, live (issue #7): slow-burn and sudden faults under load, the
# same schedule with the Arbiter acting, watching only, and off (root).
arbiter-bench:
	scripts/arbiter-bench.sh

# Issue #13: 100, 1,000 and 2,000 echo agents on one host: time to ready,
# idle CPU, RSS, threads, fds, load, recovery after killing 10 %, beside
# runit running the same agents (root; DENSITY_N, DENSITY_IDLE override).
bench-density:
	scripts/density-bench.sh

# The Debian package (static binaries, units, config, man pages, completions)
# in dist/, built with dpkg-deb.
deb:
	VERSION=$(VERSION) scripts/build-deb.sh

# Installs the .deb in a Debian bookworm VM (qemu; the image is cached in
# /var/cache/resilienced-vm) and runs the integration checks under systemd.
vm-test:
	VERSION=$(VERSION) scripts/vm-test.sh

clean:
	rm -rf $(BIN) dist
