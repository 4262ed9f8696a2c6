#!/usr/bin/env bash
# The MCP front door's benchmark (issue #12): the same echo agents called
# directly over their pipes (no daemon), through the daemon's unix socket
# API, and through the MCP front door with the Go SDK's client (session
# era and stateless 2026-07-28 era), all in one run, printed side by side.
#
# Usage: scripts/bench-mcp.sh
# Environment:
#   CALLS=N    calls per row (default 5000)
#   C=N        callers (and agents, and MCP sessions) of the concurrent rows (default 8)
#   AGENT=A    echo (examples/agents/echo, C; default) or flaky (Go)
#   COUNT=N    repeat the benchmark N times (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."

CALLS=${CALLS:-5000}
C=${C:-8}
AGENT=${AGENT:-echo}
COUNT=${COUNT:-1}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "resilienced MCP front door benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), kernel $(uname -r), $(go version | cut -d' ' -f3), uid $(id -u)"
echo "commit:  $(git describe --always --dirty 2>/dev/null || echo unknown); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: go test -run '^\$' -bench BenchmarkMCPFrontDoor -benchtime ${CALLS}x -count $COUNT ./internal/api/ -args -callpath.c=$C -callpath.agent=$AGENT"
echo

go test -run '^$' -bench BenchmarkMCPFrontDoor -benchtime "${CALLS}x" -count "$COUNT" -timeout 60m ./internal/api/ \
	-args -callpath.c="$C" -callpath.agent="$AGENT" | tee "$out" | grep -E '^(--- |FAIL|panic:)' || true

# The paired row: one caller, the four ways by turns (the fair latency).
awk '
/^BenchmarkMCPFrontDoor\/paired/ {
	delete m
	for (i = 3; i < NF; i += 2) m[$(i+1)] = $i
	printf "\npaired (one caller, the ways by turns; load moves them together):\n"
	printf "%-22s %9s %9s %12s %12s\n", "way", "p50-µs", "p99-µs", "added-p50-µs", "added-p99-µs"
	split("direct socket mcp mcp-stateless", ways, " ")
	for (w = 1; w <= 4; w++) {
		k = ways[w]
		printf "%-22s %9.0f %9.0f %12s %12s\n", k, m[k "-p50-µs"], m[k "-p99-µs"],
			((k "-added-p50-µs") in m) ? sprintf("%.0f", m[k "-added-p50-µs"]) : "-",
			((k "-added-p99-µs") in m) ? sprintf("%.0f", m[k "-added-p99-µs"]) : "-"
	}
	print ""
}' "$out"

# One line per row: the metrics by name, whatever order go test printed them in.
awk '
/^BenchmarkMCPFrontDoor\// && !/paired/ {
	name = $1; sub(/^BenchmarkMCPFrontDoor\//, "", name); sub(/-[0-9]+$/, "", name)
	delete m
	for (i = 3; i < NF; i += 2) m[$(i+1)] = $i
	printf "%-22s %10.0f %9.0f %9.0f %12s %12s %11.0f %12.0f %10.0f\n", name, m["calls/s"], m["p50-µs"], m["p99-µs"],
		(("added-p50-µs" in m) ? sprintf("%.0f", m["added-p50-µs"]) : "-"),
		(("added-p99-µs" in m) ? sprintf("%.0f", m["added-p99-µs"]) : "-"),
		m["cpu-µs/call"], m["ceiling-calls/s"], m["B/op"]
	n++
}
BEGIN { printf "%-22s %10s %9s %9s %12s %12s %11s %12s %10s\n", "row", "calls/s", "p50-µs", "p99-µs", "added-p50-µs", "added-p99-µs", "cpu-µs/call", "ceiling/s", "B/call" }
END { if (n == 0) { print "no benchmark rows: see the output above"; exit 1 } }
' "$out"
