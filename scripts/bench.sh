#!/usr/bin/env bash
# Runs every benchmark of the repository and prints their results, each
# package under a header with the machine's load at the time: these
# benchmarks print their baseline beside their result, so one run is a
# comparison, but a busy machine still moves both; docs/BENCHMARKS.md says
# how to read them.
#
# Usage: scripts/bench.sh [PACKAGE...]        (default: every package with benchmarks)
# Environment:
#   COUNT=N        repeat each benchmark N times (go test -count; default 1)
#   CALLS=N        calls per row of BenchmarkCallPath and BenchmarkAPI (default 20000)
#   BENCH_OUT=F    also write the raw output to F
#
# Privileged benchmarks (cgroup, eBPF, isolation) need root and skip
# without it, saying why.
set -uo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-1}
CALLS=${CALLS:-20000}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# The benchmarks of one package, with what makes them meaningful.
args_for() {
	case "$1" in
	# The rows of BenchmarkCallPath and BenchmarkAPI (single calls beside
	# the call stream) are CALLS calls each; BenchmarkDecodeCall is quick
	# at any count.
	./internal/api) echo "-bench . -benchtime ${CALLS}x -timeout 60m" ;;
	# 200 SIGKILLs per row, whatever -benchtime says.
	./internal/supervisor) echo "-bench BenchmarkRecovery -benchtime 1x -timeout 60m" ;;
	*) echo "-bench . -timeout 30m" ;;
	esac
}

if [ $# -gt 0 ]; then
	pkgs=("$@")
else
	mapfile -t pkgs < <(grep -rl --include='*_test.go' '^func Benchmark' . | xargs -n1 dirname | sort -u)
fi

echo "resilienced benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), kernel $(uname -r), $(go version | cut -d' ' -f3), uid $(id -u)"
echo "commit:  $(git describe --always --dirty 2>/dev/null || echo unknown)"
echo

failed=0
for pkg in "${pkgs[@]}"; do
	# shellcheck disable=SC2046
	echo "=== $pkg   (load $(cut -d' ' -f1-3 /proc/loadavg))"
	go test -run '^$' $(args_for "$pkg") -count "$COUNT" "$pkg" 2>&1 |
		tee -a "$out" |
		grep -E '^(Benchmark|--- (SKIP|FAIL)|\s+\S+_test\.go:[0-9]+:|ok |FAIL|panic:|PASS)' |
		grep -vE '^(PASS|ok )'
	if [ "${PIPESTATUS[0]}" -ne 0 ]; then
		failed=$((failed + 1))
		echo "!!! $pkg: go test failed"
	fi
	echo
done
echo "=== done   (load $(cut -d' ' -f1-3 /proc/loadavg)); ${#pkgs[@]} packages, $failed failed"
if [ -n "${BENCH_OUT:-}" ]; then
	cp "$out" "$BENCH_OUT"
fi
[ "$failed" -eq 0 ]
