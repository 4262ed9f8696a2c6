#!/usr/bin/env bash
# scripts/adopt-bench.sh: time to serve again after a restart of the daemon,
# agents adopted (resilientctl upgrade: the binary re-executed, the agents'
# pipes handed over) beside a cold start of the same agents, in one run.
# 8 agents (replicas 6 + spares 2) of the flaky example agent that loads
# for STARTUP (default 2s, -startup-delay: a model or an index) before its
# handshake. Each figure: from the command until every pool has its
# replicas active and spares ready. Needs root (cgroups).
#   ROUNDS=5 STARTUP=2s scripts/adopt-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
STARTUP=${STARTUP:-2s}
work=$(mktemp -d /tmp/adopt-bench.XXXXXX)
trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null; sleep 1; rm -rf "$work"' EXIT
go build -o "$work/resilienced" ./cmd/resilienced
go build -o "$work/resilientctl" ./cmd/resilientctl
go build -o "$work/flaky" ./examples/agents/flaky
cat >"$work/c.yaml" <<YAML
pools:
  - name: slow
    command: [$work/flaky, -seed, "1", -startup-delay, "$STARTUP"]
    replicas: 6
    spares: 2
    start_timeout: 60s
YAML
ctl() { "$work/resilientctl" --socket "$work/s.sock" "$@"; }
ready() { ctl status -o json 2>/dev/null | jq -e '.pools | length > 0 and all(.active >= .replicas and .spares >= .spares_wanted)' >/dev/null; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
cold=() adopt=()
for r in $(seq "$ROUNDS"); do
	t0=$(date +%s%N)
	"$work/resilienced" --config "$work/c.yaml" --socket "$work/s.sock" --state-dir "$work/state" --cgroup-name adopt-bench --arbiter=false --log-level warn 2>>"$work/log" &
	until ready; do sleep 0.01; done
	cold+=("$(ms "$t0")")
	before=$(ctl agents -o json | jq -c '[.[].pid] | sort')
	t0=$(date +%s%N)
	ctl upgrade --wait 60s >/dev/null
	until ready; do sleep 0.01; done
	adopt+=("$(ms "$t0")")
	after=$(ctl agents -o json | jq -c '[.[].pid] | sort')
	[ "$before" = "$after" ] || { echo "round $r: agent pids changed: $before -> $after" >&2; exit 1; }
	ctl status -o json | jq .pid >"$work/pid"
	kill "$(cat "$work/pid")"
	while ctl status >/dev/null 2>&1; do sleep 0.05; done
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '8 agents, startup %s, %d rounds (median, all in ms)\n' "$STARTUP" "$ROUNDS"
printf '  cold start of all agents:            %6s   (%s)\n' "$(median "${cold[@]}")" "${cold[*]}"
printf '  resilientctl upgrade, all adopted:   %6s   (%s)\n' "$(median "${adopt[@]}")" "${adopt[*]}"
