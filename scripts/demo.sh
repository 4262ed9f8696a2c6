#!/usr/bin/env bash
# The demo (`make demo`): build everything, start a daemon on a temporary
# socket and state directory with examples/demo.yaml, drive at least 100,000
# calls at it concurrently while a chaos schedule injects every fault kind
# (examples/demo-chaos.yaml), and print what callers saw: calls served, the
# success rate, and the recovery of each fault kind against the 300 ms gate.
# Then stop the daemon and leave nothing running.
#
# As root it uses cgroups, eBPF and the Kill Switch; as a normal user the
# daemon runs in its degraded mode (process groups, no eBPF), and the fault
# kinds that need root (sever, leak, oom) are reported as not supported.
#
# Environment: DEMO_CALLS (default 100000), DEMO_CONCURRENCY (16),
# DEMO_REPORT (the HTML report; default $TMPDIR/resilienced-demo-report.html).
# Exit status: 0 when the gate passes, 1 when it fails, 2 when the demo
# cannot run.
set -uo pipefail

cd "$(dirname "$0")/.."
calls=${DEMO_CALLS:-100000}
concurrency=${DEMO_CONCURRENCY:-16}
report=${DEMO_REPORT:-${TMPDIR:-/tmp}/resilienced-demo-report.html}
upstream=127.0.0.1:47017 # examples/demo.yaml names it

say() { printf '%s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 2; }

if [ "$(id -u)" -eq 0 ]; then
	say "resilienced demo, as root: agents in their own cgroups, eBPF telemetry, the Kill Switch."
else
	say "resilienced demo, as $(id -un): DEGRADED MODE. Without root the daemon runs agents in process"
	say "groups (no cgroups, no eBPF): sever, leak and oom cannot be injected and fail the gate."
	say "Run it as root (sudo make demo) for the whole demo."
fi
# The daemon reaps agent cgroups and isolation pins a previous instance left:
# never next to a resilienced that is running for real.
if pgrep -x resilienced >/dev/null 2>&1; then
	die "a resilienced is already running on this host ($(pgrep -x resilienced | tr '\n' ' ')); the demo would take over its cgroups. Stop it first."
fi
command -v go >/dev/null || die "go is not installed (https://go.dev/dl/)"
if (exec 3<>"/dev/tcp/${upstream%:*}/${upstream#*:}") 2>/dev/null; then
	die "$upstream is taken; the demo's upstream needs it (examples/demo.yaml)"
fi

repo=$(pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/resilienced-demo.XXXXXX")
sock=$tmp/resilienced.sock
bin=$tmp/bin
say "building the daemon, the CLI, the load generator and the flaky agent into $bin ..."
go build -o "$bin/" ./cmd/resilienced ./cmd/resilientctl ./cmd/resilient-load ./examples/agents/flaky ||
	{ rm -rf "$tmp"; die "build failed"; }
daemon_pid=
upstream_pid=

cleanup() {
	trap - EXIT INT TERM
	if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
		kill -TERM "$daemon_pid" 2>/dev/null
		for _ in $(seq 300); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$daemon_pid" 2>/dev/null; then
			say "demo: the daemon did not stop within 30 s; killing it"
			kill -KILL "$daemon_pid" 2>/dev/null
		fi
		wait "$daemon_pid" 2>/dev/null
	fi
	if [ -n "$upstream_pid" ]; then
		kill -TERM "$upstream_pid" 2>/dev/null
		wait "$upstream_pid" 2>/dev/null
	fi
	left=$(pgrep -f "^bin/flaky -hallucinate=0.05" || true)
	if [ -n "$left" ]; then
		say "demo: agents left running after the daemon stopped: $left (killing them)"
		kill -KILL $left 2>/dev/null
	else
		say "daemon stopped; nothing left running."
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$bin/resilient-load" upstream --listen "$upstream" &
upstream_pid=$!

# setsid keeps Ctrl-C away from the daemon: the load generator stops the
# experiment (which undoes its faults and reports), then cleanup stops the
# daemon.
launcher=
command -v setsid >/dev/null && launcher=setsid
# The daemon runs in $tmp, where the agents' command (bin/flaky in
# examples/demo.yaml) is found.
(cd "$tmp" && exec $launcher "$bin/resilienced" --config "$repo/examples/demo.yaml" --socket "$sock" \
	--state-dir "$tmp/state" --log-level warn 2>"$tmp/daemon.log") &
daemon_pid=$!
for _ in $(seq 100); do
	[ -S "$sock" ] && break
	kill -0 "$daemon_pid" 2>/dev/null || { cat "$tmp/daemon.log" >&2; die "the daemon did not start"; }
	sleep 0.1
done
[ -S "$sock" ] || { cat "$tmp/daemon.log" >&2; die "no socket at $sock after 10 s"; }

"$bin/resilientctl" --socket "$sock" status | sed -n '1,/^$/p'
say "driving $calls calls, $concurrency at a time, while the chaos schedule injects every fault kind:"
"$bin/resilient-load" run --socket "$sock" --pool demo --calls "$calls" --concurrency "$concurrency" \
	--chaos examples/demo-chaos.yaml --report-html "$report"
rc=$?
if [ $rc -ne 0 ] && [ $rc -ne 1 ]; then
	say "demo: the load generator failed ($rc); the daemon's log:"
	tail -n 30 "$tmp/daemon.log"
fi
exit $rc
