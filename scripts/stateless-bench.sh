#!/usr/bin/env bash
# Issue #17's table: what 5 % of bad outputs cost. The flaky Go agent,
# 4 replicas and 4 spares, 32 callers through the socket, default backoff,
# intensity and breaker (examples/stateless-bench.yaml), one daemon, the
# pools called one after the other: clean (the baseline), 5 % with
# agent_state none (and with violation_streak 2), 5 % stateful (replaced
# on every violation). For each: calls/s, p50, p99, failed calls, calls
# retried (each after a violation: 5 % hallucination), agents replaced (the
# pool's restarts) and the daemon's CPU.
# Root (cgroups). Environment: DURATION per row (default 60s); NONE_CALLS,
# when set, runs the agent_state none row for at least that many calls
# instead; ROWS picks rows (default "clean none none-s2 stateful"); PPROF,
# when set to a loopback host:port, serves the daemon's Go profiles there.
set -uo pipefail
cd "$(dirname "$0")/.."
dur=${DURATION:-60s}
rows=${ROWS:-clean none none-s2 stateful}
die() { printf 'stateless-bench: %s\n' "$*" >&2; exit 2; }
repo=$(pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/resilienced-stateless.XXXXXX")
sock=$tmp/s.sock
# The agent static (no cgo), as a Go agent is shipped: a dynamic one pays the
# loader on every start (~4 ms of CPU here), and this table is about starts.
go build -o "$tmp/bin/" ./cmd/resilienced ./cmd/resilientctl ./cmd/resilient-load &&
	CGO_ENABLED=0 go build -o "$tmp/bin/" ./examples/agents/flaky || die "build failed"
(cd "$tmp" && exec setsid bin/resilienced --config "$repo/examples/stateless-bench.yaml" --socket "$sock" \
	--state-dir "$tmp/state" --cgroup-name resilienced-stateless-bench --log-level warn \
	${PPROF:+--pprof "$PPROF"} 2>"$tmp/daemon.log") &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
ctl() { "$tmp/bin/resilientctl" --socket "$sock" "$@"; }
echo "stateless-bench $(date -u +%FT%TZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), commit $(git describe --always --dirty)"
# The agents' CPU, live and gone, is their cgroups' (cgroup2 counts a removed
# child's usage in its parent): daemon_ms and agents_ms are CPU ms per call;
# repl_ms is CPU ms per replacement, what a row spends beyond its calls at
# the clean row's cost per call, over its replacements.
cg=$(find /sys/fs/cgroup -maxdepth 5 -type d -name resilienced-stateless-bench 2>/dev/null | head -1)
agents_us() { if [ -n "$cg" ]; then awk '$1 == "usage_usec" {print $2}' "$cg/cpu.stat"; else echo 0; fi; }
printf '%-9s %9s %8s %8s %9s %7s %8s %9s %10s %9s %9s %8s\n' pool calls calls/s p50_ms p99_ms failed retried replaced daemon_cpu daemon_ms agents_ms repl_ms
restarts() { ctl -o json status | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(next(p["restarts"] for p in (d if isinstance(d, list) else d.get("pools", [])) if p["name"] == sys.argv[1]))' "$1"; }
fail=0
for row in $rows; do
	args=(--duration "$dur")
	if [ "$row" = none ] && [ -n "${NONE_CALLS:-}" ]; then args=(--calls "$NONE_CALLS"); fi
	r0=$(restarts "$row")
	c0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	a0=$(agents_us)
	"$tmp/bin/resilient-load" run --socket "$sock" --pool "$row" "${args[@]}" --concurrency 32 \
		--abort-after-failures -1 --warmup 0s --report-json "$tmp/$row.json" --quiet >"$tmp/$row.out" 2>&1
	c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	r1=$(restarts "$row")
	sleep 1 # the last victims reaped and their cgroups gone
	a1=$(agents_us)
	python3 - "$tmp/$row.json" "$((r1 - r0))" "$row" "$c0" "$c1" "$(getconf CLK_TCK)" "$a0" "$a1" "$tmp/clean.cost" <<'PY' || fail=1
import json, os, sys
r = json.load(open(sys.argv[1]))
row, replaced = sys.argv[3], int(sys.argv[2])
c = r["calls"]
total, failed, took = c["total"], c["failed"], r["elapsed_s"]
lat = c.get("latency_ms") or {}
cpu = (int(sys.argv[5]) - int(sys.argv[4])) / int(sys.argv[6]) * 1000  # ms
agents = (int(sys.argv[8]) - int(sys.argv[7])) / 1000  # ms
per_call = (cpu + agents) / max(total, 1)
cost = sys.argv[9]
if row == "clean":
    open(cost, "w").write(str(per_call))
repl = "-"
if replaced > 0 and os.path.exists(cost) and row != "clean":
    repl = f"{(cpu + agents - total * float(open(cost).read())) / replaced:.1f}"
print(f"{row:<9} {total:>9} {total/took:>8.0f} {lat.get('p50',0):>8.2f} {lat.get('p99',0):>9.2f} {failed:>7} {c['retried']:>8} {replaced:>9} {cpu/took/10:>9.0f}% {cpu/max(total,1):>9.3f} {agents/max(total,1):>9.3f} {repl:>8}")
sys.exit(0 if failed == 0 else 1)
PY
done
exit $fail
