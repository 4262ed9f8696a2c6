#!/usr/bin/env bash
# The soak (`make soak`, not part of `make test`): a daemon on default
# settings (examples/soak.yaml) under 64 concurrent callers for 10 minutes
# while a chaos schedule injects every fault kind at 1.5 faults a second
# (examples/soak-chaos.yaml). It passes when no call was lost, and once the
# daemon has stopped nothing it made is left: no agent process, no agent
# cgroup, no isolation pin; and while it ran, its open file descriptors and
# its RSS at the end were within 10 % of their values after the first
# minute. As root (cgroups, eBPF, the Kill Switch).
#
# Environment: SOAK_DURATION (default 10m, the chaos schedule's), SOAK_CONCURRENCY (64),
# SOAK_PROFILES (a directory: the daemon serves pprof, and a heap profile is
# saved there with each sample).
set -uo pipefail
cd "$(dirname "$0")/.."
concurrency=${SOAK_CONCURRENCY:-64}
duration=${SOAK_DURATION:-}
upstream=127.0.0.1:47017

say() { printf '%s\n' "$*"; }
die() { printf 'soak: %s\n' "$*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "run it as root: the soak injects faults that need cgroups and eBPF"
# A cgroup subtree of its own: other daemons on the host (tests, the demo)
# neither reap the soak's agents nor count in its leak check.
cgname=resilienced-soak

repo=$(pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/resilienced-soak.XXXXXX")
sock=$tmp/resilienced.sock
bin=$tmp/bin
chaos=$tmp/chaos.yaml
cp examples/soak-chaos.yaml "$chaos"
[ -n "$duration" ] && sed -i "s/^duration: .*/duration: $duration/" "$chaos"
go build -o "$bin/" ./cmd/resilienced ./cmd/resilientctl ./cmd/resilient-load ./examples/agents/flaky || die "build failed"

cgroups() { find /sys/fs/cgroup -type d -path "*/$cgname/*" 2>/dev/null | grep -c /agents/ ; }
pins() { find /sys/fs/bpf -path '*resilienced*' -type f 2>/dev/null | grep -vc isolate_maps ; }
agents() { pgrep -fc "^bin/flaky -upstream=$upstream" ; }
before_cg=$(cgroups); before_pins=$(pins)

"$bin/resilient-load" upstream --listen "$upstream" & upstream_pid=$!
profiles=${SOAK_PROFILES:-}
pprof_args=()
if [ -n "$profiles" ]; then mkdir -p "$profiles"; pprof_args=(--pprof 127.0.0.1:19465); fi
(cd "$tmp" && exec setsid "$bin/resilienced" --config "$repo/examples/soak.yaml" --socket "$sock" \
	--state-dir "$tmp/state" --cgroup-name "$cgname" --log-level warn "${pprof_args[@]}" 2>"$tmp/daemon.log") &
daemon_pid=$!
cleanup() {
	kill -TERM "$daemon_pid" "$upstream_pid" 2>/dev/null
	wait "$daemon_pid" "$upstream_pid" 2>/dev/null
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { cat "$tmp/daemon.log" >&2; die "the daemon did not start"; }

rss() { awk '/^VmRSS/ {print $2}' "/proc/$daemon_pid/status"; }
# RSS by kind: anonymous (the Go heap, stacks), file-backed and shared
# (mapped BPF ring buffers and maps, touched page by page as they fill).
rsskinds() { awk '/^RssAnon|^RssFile|^RssShmem/ {printf "%s ", $2}' "/proc/$daemon_pid/status"; }
# The daemon's own descriptors: not the pipes, pidfds, cgroup directories
# and adoption records (memfd) it holds for each agent, whose number
# follows the agents. Eventfds (cgroup v1 memory events) and BPF links
# are per agent too but not told apart here: the fd check below compares
# two samples with as many agents.
fds() { ls -l "/proc/$daemon_pid/fd" 2>/dev/null | awk 'NR > 1 && $NF !~ /^pipe:|pidfd|\/sys\/fs\/cgroup|memfd:resilienced-agent/' | wc -l; }
metric() { curl -s http://127.0.0.1:19464/metrics 2>/dev/null | awk -v m="$1" '$1 == m {print int($2)}'; }
kib() { echo $(( $(metric "$1") / 1024 )); }
agents_alive() { "$bin/resilientctl" --socket "$sock" agents 2>/dev/null | grep -c soak-; }
sample() {
	[ -n "$profiles" ] && curl -s -o "$profiles/heap-$(date +%s).pb.gz" http://127.0.0.1:19465/debug/pprof/heap
	echo "$(date +%s) $(rss) $(fds) $(metric go_goroutines) $(kib go_memstats_heap_inuse_bytes) $(agents_alive) $(rsskinds)" \
		"$(kib go_memstats_heap_sys_bytes) $(kib go_memstats_heap_released_bytes) $(kib go_memstats_stack_inuse_bytes) $(kib go_memstats_next_gc_bytes)"
}
# A sample every 30 s; the first minute's is the reference.
( while kill -0 "$daemon_pid" 2>/dev/null; do sample >>"$tmp/samples"; sleep 30; done ) &
sampler=$!

say "soak: $concurrency callers, every fault kind at 1.5/s for ${duration:-10m}, default pool settings"
"$bin/resilient-load" run --socket "$sock" --pool soak --calls 1 --concurrency "$concurrency" \
	--chaos "$chaos" --abort-after-failures -1 --report-json "$tmp/report.json" --quiet
load_rc=$?
kill "$sampler" 2>/dev/null
# The reference is the first sample after a minute; the end is the last
# sample taken under load (the callers' connections are gone after it).
t0=$(head -1 "$tmp/samples" | cut -d' ' -f1)
read -r _ rss1 fds1 gor1 heap1 _ anon1 _ < <(awk -v t="$t0" '$1 >= t + 60' "$tmp/samples" | head -1)
read -r _ rss2 fds2 gor2 heap2 _ anon2 _ < <(tail -1 "$tmp/samples")
# For the descriptors, the last sample with as many agents as the
# reference (a surge spare more holds a few more of them).
read -r _ _ fdsa1 _ _ agents1 _ < <(awk -v t="$t0" '$1 >= t + 60' "$tmp/samples" | head -1)
read -r _ _ fdsa2 _ _ agents2 _ < <(awk -v t="$t0" -v n="$agents1" '$1 >= t + 60 && $6 == n' "$tmp/samples" | tail -1)
status=$("$bin/resilientctl" --socket "$sock" status | sed -n '1,/^$/p')
cleanup
trap - EXIT
sleep 1

lost=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); c=r.get("calls",{}); print(c.get("failed",0))' "$tmp/report.json" 2>/dev/null || echo "?")
total=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); c=r.get("calls",{}); print(c.get("total",0))' "$tmp/report.json" 2>/dev/null || echo "?")
left_agents=$(agents); left_cg=$(( $(cgroups) - before_cg )); left_pins=$(( $(pins) - before_pins ))
rss_pct=$(( (rss2 - rss1) * 100 / rss1 )); fds_pct=$(( (fds2 - fds1) * 100 / fds1 ))

say "$status"
say "calls: $total, failed: $lost (load generator exit $load_rc)"
say "samples (s since start, RSS KiB, own fds, goroutines, Go heap in use KiB, agents, RssAnon RssFile RssShmem KiB, Go heap sys, released, stacks, next GC KiB):"
awk -v t="$t0" '{ $1 = $1 - t; print "  " $0 }' "$tmp/samples"
say "daemon RSS: ${rss1} KiB after 1 min, ${rss2} KiB at the end (${rss_pct}%); own fds: $fds1 -> $fds2; goroutines: $gor1 -> $gor2; Go heap in use: $heap1 -> $heap2 KiB; RssAnon: $anon1 -> $anon2 KiB"
say "left after stop: $left_agents agent processes, $left_cg agent cgroups, $left_pins isolation pins"
fail=0
[ "$lost" = 0 ] || { say "FAIL: calls were lost"; fail=1; }
[ "$left_agents" = 0 ] && [ "$left_cg" -le 0 ] && [ "$left_pins" -le 0 ] || { say "FAIL: something outlived the daemon"; fail=1; }
[ "${rss_pct#-}" -le 10 ] || { say "FAIL: RSS moved by more than 10 %"; fail=1; }
say "own fds at $agents1 agents: $fdsa1 after 1 min, $fdsa2 at the last such sample"
[ "$fdsa2" -le "$fdsa1" ] || { say "FAIL: the daemon's own fds grew"; fail=1; }
rm -rf "$tmp"
[ $fail = 0 ] && say "soak: PASS"
exit $fail
