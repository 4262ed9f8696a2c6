#!/usr/bin/env bash
# Issue #11's acceptance on default settings (examples/defaults.yaml):
#  1. SIGKILL of a serving agent every 500 ms for 60 s (replicas 2, spares 1):
#     every recover_ms, its p99 (judged against 50 ms), and the time until
#     the pool is back at strength as the chaos engine sees it from outside;
#  2. a pool hallucinating 5 % under load for HALLUC_DURATION (default 10m)
#     at >= 500 calls/s: failed calls, and whether it ever left `running`.
# Root (cgroups). Prints its figures; exit 1 if a bar is missed.
# DEFAULTS_PARTS picks parts (default "1 2 3").
set -uo pipefail
cd "$(dirname "$0")/.."
halluc=${HALLUC_DURATION:-10m}
parts=" ${DEFAULTS_PARTS:-1 2 3} "
part() { [[ $parts == *" $1 "* ]]; }
die() { printf 'defaults-bench: %s\n' "$*" >&2; exit 2; }
# A cgroup subtree of its own, so other daemons on the host do not reap its agents.
cgname=resilienced-defaults-bench
repo=$(pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/resilienced-defaults.XXXXXX")
sock=$tmp/s.sock
go build -o "$tmp/bin/" ./cmd/resilienced ./cmd/resilientctl ./cmd/resilient-load ./examples/agents/flaky || die "build failed"
(cd "$tmp" && exec setsid bin/resilienced --config "$repo/examples/defaults.yaml" --socket "$sock" \
	--state-dir "$tmp/state" --cgroup-name "$cgname" --log-level warn 2>"$tmp/daemon.log") &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
ctl() { "$tmp/bin/resilientctl" --socket "$sock" "$@"; }
fail=0

if part 1; then
echo "== 1. SIGKILL of a serving agent every 500 ms for 60 s, defaults (replicas 2, spares 1)"
"$tmp/bin/resilient-load" run --socket "$sock" --pool kills --calls 1 --concurrency 8 \
	--chaos examples/defaults-kill.yaml --report-json "$tmp/kill.json" --quiet >"$tmp/kill.out"
grep -E "calls|recover|kill" "$tmp/kill.out" | head -20
ctl -o json events --since 5m 2>/dev/null | python3 -c '
import json, sys
rs = []
for line in sys.stdin:
    try: ev = json.loads(line)
    except ValueError: continue
    if ev.get("kind") == "recovered" and ev.get("pool") == "kills":
        rs.append(ev["recover_ms"])
rs.sort()
if not rs: print("no recovered events"); sys.exit(1)
p99 = rs[min(len(rs)-1, int(len(rs)*0.99))]
print(f"daemon recovered events: {len(rs)}, recover_ms min {rs[0]:.2f} p50 {rs[len(rs)//2]:.2f} p99 {p99:.2f} max {rs[-1]:.2f}")
sys.exit(0 if rs[-1] < 300 and p99 <= 50 else 1)' || fail=1

fi
if part 2; then
echo "== 2. 5 % hallucination for $halluc under 64 callers, defaults"
sed "s/^/  /" <<<"$(ctl status | sed -n '1,/^$/p')"
t0=$SECONDS
( while sleep 1; do ctl -o json status 2>/dev/null | T=$((SECONDS - t0)) python3 -c '
import json,os,sys
d = json.load(sys.stdin)
for p in (d if isinstance(d, list) else d.get("pools", [])):
    if p["name"]=="halluc" and p["state"]!="running": print(p["state"], p.get("reason",""), "at", os.environ["T"] + "s", p.get("active"), p.get("spares"))' ; done ) >"$tmp/states" &
watcher=$!
"$tmp/bin/resilient-load" run --socket "$sock" --pool halluc --duration "$halluc" --concurrency 64 \
	--abort-after-failures -1 --report-json "$tmp/h.json" --quiet | tail -5
kill $watcher 2>/dev/null
python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
c, took = r["calls"], r["elapsed_s"]
total, failed, retried = c["total"], c["failed"], c["retried"]
print(f"calls {total} in {took:.0f}s ({total/took:.0f}/s), failed {failed}, retried {retried}")
sys.exit(0 if failed == 0 and total / took >= 500 else 1)' "$tmp/h.json" || fail=1
if [ -s "$tmp/states" ]; then echo "the pool left running (status sampled every second):"; cut -d" " -f1 "$tmp/states" | sort | uniq -c; head -30 "$tmp/states"; fail=1; else echo "the pool never left running (status sampled every second)"; fi

fi
if part 3; then
echo "== 3. a command that exits at once (/bin/false), defaults: backoff, then failed at the intensity limit"
kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null
rm -f "$sock"
(cd "$tmp" && exec setsid bin/resilienced --config "$repo/examples/defaults-crashloop.yaml" --socket "$sock" \
	--state-dir "$tmp/state3" --cgroup-name "$cgname" --log-level warn 2>"$tmp/daemon3.log") &
pid=$!
for _ in $(seq 200); do ctl status >/dev/null 2>&1 && break; sleep 0.05; done
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
c0=$(cpu); t0=$(date +%s.%N)
state=
for _ in $(seq 600); do
	state=$(ctl -o json status 2>/dev/null | python3 -c '
import json,sys
d = json.load(sys.stdin)
print(next(p["state"] for p in (d if isinstance(d, list) else d.get("pools", [])) if p["name"] == "crashloop"))' 2>/dev/null)
	[ "$state" = failed ] && break
	sleep 0.1
done
c1=$(cpu); t1=$(date +%s.%N)
fails=$(ctl -o json events --since 5m 2>/dev/null | grep -c '"spawn_failed"')
python3 -c '
import sys
c0, c1, hz, t0, t1 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
cpu = (c1 - c0) / hz; wall = t1 - t0
print(f"pool state {sys.argv[6]} after {wall:.1f}s and {sys.argv[7]} start failures; daemon CPU meanwhile {cpu:.2f}s = {100*cpu/wall:.1f} % of a CPU")
sys.exit(0 if sys.argv[6] == "failed" and cpu / wall < 0.05 else 1)' "$c0" "$c1" "$hz" "$t0" "$t1" "$state" "$fails" || fail=1
fi
exit $fail
