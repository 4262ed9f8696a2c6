#!/usr/bin/env bash
# The Arbiter, live (issue #7; `make arbiter-bench`): a daemon runs pools of
# flaky agents under load for a fixed time while some of them burn slowly
# towards failure (a memory leak to the OOM killer, call latency rising to
# the deadline, syscall errors snowballing to a crash) and a chaos schedule
# kills others without warning. The same schedule (same seeds, same
# config, same load) runs three times, each daemon on its own socket, state
# directory and cgroup subtree:
#
#   acting    --arbiter (the default): predictions replace agents (drain, a
#             spare takes over) before they fail;
#   watching  --arbiter --arbiter-holdout=1: every agent is
#             held out, so the Arbiter predicts and journals but never acts.
#             Its `resilientctl arbiter eval` is the honest score of the
#             predictions: no agent was replaced, so each prediction meets
#             the truth (in the acting run a replaced agent never fails, and
#             the replay counts its prediction as wrong);
#   off       --arbiter=false: no Arbiter at all.
#
# It prints each run's `resilientctl arbiter eval -o json`, then one table:
# failures, predicted, precision, recall, lead p50, false predictions per
# agent-hour (from the eval), failed calls (from resilient-load), recovery
# events, unplanned deaths and replacements (from `resilientctl events`).
# Sudden failures (chaos kills) are counted apart, never as misses.
#
# Environment:
#   ARBITER_BENCH_DURATION  seconds of load per run (default 180)
#   ARBITER_BENCH_RUNS      which runs, in order (default "acting watching off")
#   ARBITER_BENCH_SEED      seed of the agents and of the chaos schedule (default 7)
#   ARBITER_BENCH_LEAKS     leaks injected by chaos into `calm` after the load
#                           phase, one at a time, under load (default 10; 0:
#                           none); the chaos report scores the Arbiter against
#                           them: lead against each leak's burn (start to OOM)
#   ARBITER_BENCH_KEEP=1    keep the temporary directory (logs, events, evals)
# Exit status: 0 when every run completed, 2 when the bench cannot run
# (not root, build failure, a daemon that does not start).
set -uo pipefail
cd "$(dirname "$0")/.."

duration=${ARBITER_BENCH_DURATION:-180}
runs=${ARBITER_BENCH_RUNS:-acting watching off}
seed=${ARBITER_BENCH_SEED:-7}
leaks=${ARBITER_BENCH_LEAKS:-10}

say() { printf '%s\n' "$*"; }
die() { printf 'arbiter-bench: %s\n' "$*" >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || die "needs root: agents in their own cgroups with memory limits, eBPF syscall telemetry (run: sudo make arbiter-bench)"
case $duration in '' | *[!0-9]*) die "ARBITER_BENCH_DURATION=$duration: want whole seconds" ;; esac
command -v go >/dev/null || die "go is not installed"
command -v jq >/dev/null || die "jq is not installed (apt-get install jq)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/arbiter-bench.XXXXXX")
bin=$tmp/bin
daemon_pid=
bg_pids=()

stop_pid() { # PID SIGNAL SECONDS: signal, wait, then SIGKILL
	local pid=$1 sig=$2 secs=$3
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
	kill "-$sig" "$pid" 2>/dev/null
	for _ in $(seq $((secs * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

cleanup() {
	trap - EXIT INT TERM
	for p in "${bg_pids[@]}"; do stop_pid "$p" INT 5; done
	stop_pid "$daemon_pid" TERM 30
	if [ "${ARBITER_BENCH_KEEP:-}" = 1 ]; then
		say "arbiter-bench: kept $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building the daemon, the CLI, the load generator and the flaky agent into $bin ..."
go build -o "$bin/" ./cmd/resilienced ./cmd/resilientctl ./cmd/resilient-load ./examples/agents/flaky ||
	die "build failed"

# The pools. Every agent answers in 20-30 ms (an LLM-ish worker); the
# load keeps one call in flight per active agent. Slow burns start 25-55 s
# after an agent's first call (-ramp-after plus a seeded share of the
# jitter per agent, so failures are spread out), once the Arbiter has the
# agent's baseline (20 samples). The stall timeout is the deadline: a
# healthy agent on a loaded machine is not taken for hung, and a latency
# ramp ends on its deadline. Pings are lenient (2 s) for the same reason:
# on a shared 2-CPU machine the whole node stalls now and then, and every
# idle agent would miss a 100 ms ping at once.
#   steady  healthy; the chaos schedule kills its agents (sudden failures)
#   calm    healthy, left alone
#   leak    leaks 64 KiB per call (~2.5 MiB/s) to its 96 MiB limit: oom
#   slow    each call 25 ms slower per second: misses its 1 s deadline
#   errors  failing syscalls double every 2 s from 10/s; at 8000/s it exits 1
#           (an agent at work makes 40-90 failing syscalls/s of its own)
flaky_common="-latency=20ms -latency-jitter=10ms -seed=$seed -ramp-after=25s -ramp-after-jitter=30s"
pools="steady calm leak slow errors"
declare -A replicas=([steady]=4 [calm]=3 [leak]=3 [slow]=3 [errors]=3)
declare -A extra=(
	[steady]="" [calm]=""
	[leak]="-leak=65536"
	[slow]="-latency-ramp=25ms"
	[errors]="-error-ramp=2s -error-start=10 -error-limit=8000"
)
config=$tmp/bench.yaml
{
	say "pools:"
	for p in $pools; do
		cmd="$bin/flaky $flaky_common ${extra[$p]}"
		deadline=5s
		[ "$p" = slow ] && deadline=1s
		cat <<EOF
  - name: $p
    command: [$(printf '"%s", ' $cmd | sed 's/, $//')]
    replicas: ${replicas[$p]}
    spares: 2
    retries: 4
    backoff: {initial: 0s, max: 50ms, reset_after: 1s}
    intensity: {max_restarts: 100000, period: 10s}
    contract:
      schema: {type: object, required: [answer], properties: {answer: {type: string}}}
      deadline: $deadline
    stall_timeout: $deadline
    ping_interval: 1s
    ping_timeout: 2s
    limits: {memory: 96MiB, pids: 64}
EOF
	done
} >"$config"

chaos_spec=$tmp/kills.yaml
cat >"$chaos_spec" <<EOF
target: steady
faults: [kill]
rate: 0.1/s               # a kill every 10 s or so
duration: ${duration}s
max_concurrent: 1
seed: $seed
load: 0                   # resilient-load makes the calls
abort_after_failures: -1
EOF

# Leaks with a known start: 12 MiB/s into a 96 MiB limit burns for ~7 s
# (issue #16: "a leak that grows for 5-10 s before its OOM kill").
leak_spec=$tmp/leaks.yaml
cat >"$leak_spec" <<EOF
target: calm
faults: [leak]
count: $leaks
leak_rate: 12MiB
max_concurrent: 1
seed: $seed
load: 0                   # resilient-load makes the calls
abort_after_failures: -1
EOF

"$bin/resilienced" --config "$config" --check >/dev/null || die "the generated config is invalid: $config"

ctl() { "$bin/resilientctl" --socket "$sock" "$@"; }

# run NAME: one daemon, the load, the kills, for $duration seconds; leaves
# its figures in $tmp/NAME/.
run() {
	local name=$1 dir=$tmp/$1
	mkdir -p "$dir"
	sock=$dir/resilienced.sock
	local args=(--config "$config" --socket "$sock" --state-dir "$dir/state"
		--cgroup-name "resilienced-arbiter-bench-$$-$name" --log-level info)
	case $name in
	acting) ;;
	watching) args+=(--arbiter-holdout=1) ;;
	off) args+=(--arbiter=false) ;;
	*) die "unknown run $name (runs: acting, watching, off)" ;;
	esac
	say ""
	say "=== run '$name' ($duration s; load $(cut -d' ' -f1-3 /proc/loadavg))"
	setsid "$bin/resilienced" "${args[@]}" 2>"$dir/daemon.log" &
	daemon_pid=$!
	for _ in $(seq 100); do
		[ -S "$sock" ] && break
		kill -0 "$daemon_pid" 2>/dev/null || { tail -n 20 "$dir/daemon.log" >&2; die "run $name: the daemon did not start"; }
		sleep 0.1
	done
	[ -S "$sock" ] || { tail -n 20 "$dir/daemon.log" >&2; die "run $name: no socket at $sock after 10 s"; }
	local t0
	t0=$(date +%s)

	bg_pids=()
	for p in $pools; do
		"$bin/resilient-load" run --socket "$sock" --pool "$p" --calls 1000000000 \
			--concurrency "${replicas[$p]}" --abort-after-failures -1 --warmup 0s \
			--call-timeout 10s --quiet >"$dir/load-$p.txt" 2>&1 &
		bg_pids+=($!)
	done
	ctl chaos run "$chaos_spec" --quiet -o json >"$dir/chaos.json" 2>"$dir/chaos.err" &
	local chaos_pid=$!
	bg_pids+=($chaos_pid)

	local step=$((duration / 6)) elapsed
	[ "$step" -lt 10 ] && step=10
	while :; do
		elapsed=$(($(date +%s) - t0))
		[ "$elapsed" -ge "$duration" ] && break
		sleep $((duration - elapsed < step ? duration - elapsed : step))
		kill -0 "$daemon_pid" 2>/dev/null || { tail -n 20 "$dir/daemon.log" >&2; die "run $name: the daemon died"; }
		printf '  %3ds  %s\n' "$(($(date +%s) - t0))" "$(ctl status 2>/dev/null | awk 'NR>1 && NF {printf "%s ", $0}' | tr -s ' ' | cut -c1-150)"
	done

	ctl chaos stop >/dev/null 2>&1
	wait "$chaos_pid" 2>/dev/null
	echo '{}' >"$dir/leaks.json"
	if [ "$leaks" -gt 0 ] && [ "$name" != off ]; then
		say "  injecting $leaks leaks into calm, one at a time ..."
		ctl chaos run "$leak_spec" --quiet -o json >"$dir/leaks.json" 2>"$dir/leaks.err" || true
	fi
	for p in "${bg_pids[@]}"; do stop_pid "$p" INT 15; done
	bg_pids=()
	if [ "$name" != off ]; then
		ctl arbiter eval -o json >"$dir/eval.json" || echo '{}' >"$dir/eval.json"
	else
		echo '{}' >"$dir/eval.json"
	fi
	ctl events -o json --since 1h >"$dir/events.jsonl" 2>/dev/null
	stop_pid "$daemon_pid" TERM 30
	daemon_pid=
	uptime >"$dir/uptime.txt"

	say "arbiter eval ($name):"
	if [ "$name" = off ]; then
		say "  (no Arbiter in this run)"
	else
		jq -c . "$dir/eval.json" | sed 's/^/  /'
	fi
}

failed_calls() { # DIR: failed and total calls over every pool's load
	local f=0 t=0 line a b
	for p in $pools; do
		line=$(grep -m1 '^success rate:' "$1/load-$p.txt")
		a=$(sed -n 's/.*(\([0-9]*\) of \([0-9]*\) failed.*/\1/p' <<<"$line")
		b=$(sed -n 's/.*(\([0-9]*\) of \([0-9]*\) failed.*/\2/p' <<<"$line")
		f=$((f + ${a:-0})) t=$((t + ${b:-0}))
	done
	echo "$f/$t"
}

events() { # DIR JQ-FILTER: how many events match; $drained lists the drained agents
	jq -s "[.[] | select(.kind == \"drain\") | .agent] as \$drained | [.[] | select($2)] | length" "$1/events.jsonl" 2>/dev/null || echo -
}

say "machine: $(nproc) CPUs, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $runs; do run "$r"; done

say ""
say "=== the Arbiter, live: $duration s per run, seed $seed"
row() { printf '%-34s' "$1"; shift; for v in "$@"; do printf ' %14s' "$v"; done; printf '\n'; }
row "" $runs
get() { jq -r "$2 // \"-\"" "$tmp/$1/eval.json"; }
fmt() { # round floats
	awk -v v="$1" -v d="$2" 'BEGIN { if (v == "-" || v == "") print "-"; else printf "%." d "f\n", v }'
}
vals() { local out=() r; for r in $runs; do out+=("$("$@" "$r")"); done; echo "${out[@]}"; }
evalrow() { # LABEL JQ DECIMALS
	local label=$1 q=$2 d=$3 out=() r
	for r in $runs; do out+=("$(fmt "$(get "$r" "$q")" "$d")"); done
	row "$label" "${out[@]}"
}
evalrow "slow-burn failures" .failures 0
evalrow "  predicted within 10 s" .predicted 0
evalrow "precision" .precision 3
evalrow "recall" .recall 3
evalrow "lead p50 (ms)" .lead_ms_p50 0
evalrow "false predictions / agent-hour" .false_per_agent_hour 2
evalrow "sudden failures (kills, apart)" .sudden 0
evalrow "live holdout: predictions" .holdout.predictions 0
evalrow "live holdout: precision" .holdout.precision 3
for k in oom deadline exit; do
	out=()
	for r in $runs; do
		out+=("$(jq -r --arg k "$k" '.kinds[$k] // empty | "\(.predicted)/\(.failures)"' "$tmp/$r/eval.json" 2>/dev/null)")
		[ -z "${out[-1]}" ] && out[-1]=-
	done
	row "  $k: predicted/failures" "${out[@]}"
done
leakrow() { # LABEL JQ
	local out=() r v
	for r in $runs; do
		v=$(jq -r "$2 // \"-\"" "$tmp/$r/leaks.json" 2>/dev/null)
		out+=("${v:--}")
	done
	row "$1" "${out[@]}"
}
leakrow "chaos leaks: predicted/injected" '.arbiter | if . then "\(.predicted)/\(.slow_faults)" else null end'
leakrow "  replaced / held out" '.arbiter | if . then "\(.acted) / \(.held_out)" else null end'
leakrow "  leak start to OOM, p50 (ms)" '.arbiter.burn_ms_p50 | if . then floor else null end'
leakrow "  leak start to prediction (ms)" '.arbiter.predict_ms_p50 | if . then floor else null end'
leakrow "  lead: prediction to OOM (ms)" '.arbiter.lead_ms_p50 | if . then floor else null end'
leakrow "  predictions, no fault" '.arbiter.predictions_without_fault'
out=(); for r in $runs; do out+=("$(failed_calls "$tmp/$r")"); done
row "failed calls / calls" "${out[@]}"
kind_row() { # LABEL FILTER
	local out=() r
	for r in $runs; do out+=("$(events "$tmp/$r" "$2")"); done
	row "$1" "${out[@]}"
}
kind_row "recovery events (recovered)" '.kind == "recovered"'
# A drained agent is stopped with SIGTERM, which the supervisor reports as
# an exit: that is the replacement, not a death.
unplanned='(.injected | not) and (.agent as $a | $drained | index($a) | not)'
kind_row "unplanned deaths" "(.kind | IN(\"exit\",\"oom\",\"deadline\",\"violation\",\"hang\")) and $unplanned"
for k in oom deadline exit violation hang; do
	kind_row "  $k" ".kind == \"$k\" and $unplanned"
done
kind_row "exits of drained agents (SIGTERM)" '.kind == "exit" and (.agent as $a | $drained | index($a))' 
kind_row "chaos kills (injected)" '(.kind | IN("exit","kill")) and .injected'
kind_row "predictions (events)" '.kind == "prediction"'
kind_row "replacements (drains)" '.kind == "drain"'
for p in steady calm; do
	kind_row "  drains in healthy pool $p" ".kind == \"drain\" and .pool == \"$p\""
done
say ""
for r in $runs; do say "load after '$r': $(cat "$tmp/$r/uptime.txt")"; done
