#!/usr/bin/env bash
# make cluster-demo: a real 3-member etcd cluster and 3 resilienced nodes,
# each node (its etcd member and its daemon) in its own network namespace
# on one bridge; a cluster-aware caller (scripts/clusterload) runs 300
# sessions from 64 callers through every node's API socket while the
# script SIGKILLs one node's daemon and its agents, then cuts another
# node off (its veth down) and brings it back, then isolates that node by
# name (resilientctl isolate --node) through the third, checks that it
# cut itself off the mesh network (not etcd's), and after the load
# releases it and checks that it serves, on the mesh, again. It ends with one
# JSON line:
#
#   {"nodes":3,"etcd_members":3,"calls":N,"failed":0,"lost":0,"doubled":0,"stale_commits":0,"gap_ms_p99":X}
#
# Needs root (namespaces, cgroups). etcd is built from its Go module
# (go.etcd.io/etcd/server/v3, the version in go.mod). Environment:
# CLUSTER_DEMO_SECONDS (default 40); CLUSTER_DEMO_PPROF=1 serves each
# daemon's Go profiles on 127.0.0.1:6060 in its namespace;
# CLUSTER_DEMO_ETCD_LOG (default warn); CLUSTER_DEMO_ETCD_LEADER=away
# moves etcd's leadership off n2's member before n2 is cut off; CLUSTER_DEMO_KEEP=1 keeps the logs. Exit status: 0 when failed, lost,
# doubled and stale_commits are all 0; 1 otherwise; 2 when it cannot run.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${CLUSTER_DEMO_SECONDS:-40}
die() { printf 'cluster-demo: %s\n' "$*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, cgroups)"
command -v ip >/dev/null || die "needs iproute2"

work=$(mktemp -d /tmp/resilienced-cluster-demo.XXXXXX)
bin=$work/bin
mkdir -p "$bin"
echo "cluster-demo: building resilienced, flaky, clusterload and etcd into $bin"
go build -o "$bin/resilienced" ./cmd/resilienced &&
	go build -o "$bin/flaky" ./examples/agents/flaky &&
	go build -o "$bin/clusterload" ./scripts/clusterload &&
	go build -o "$bin/resilientctl" ./cmd/resilientctl &&
	go build -o "$bin/etcd" go.etcd.io/etcd/server/v3 || die "build failed"

br=rsdc-br0
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
	wait 2>/dev/null
	for n in 1 2 3; do ip netns del "rsdc-n$n" 2>/dev/null; ip link del "rsdc-v$n" 2>/dev/null; done
	ip link del "$br" 2>/dev/null
	# Agents of a killed daemon: its cgroup subtree goes with the next
	# daemon of that name; here, by hand.
	for n in 1 2 3; do
		for d in $(find /sys/fs/cgroup -maxdepth 3 -type d -name "resilienced-cdemo-n$n" 2>/dev/null); do
			[ -f "$d/cgroup.kill" ] && echo 1 >"$d/cgroup.kill" 2>/dev/null
			find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
		done
	done
	if [ -n "${CLUSTER_DEMO_KEEP:-}" ]; then echo "cluster-demo: logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

ip link add "$br" type bridge && ip addr add 10.77.0.254/24 dev "$br" && ip link set "$br" up || die "bridge"
endpoints=http://10.77.0.1:2379,http://10.77.0.2:2379,http://10.77.0.3:2379
initial=n1=http://10.77.0.1:2380,n2=http://10.77.0.2:2380,n3=http://10.77.0.3:2380
head -c 32 /dev/urandom | base64 >"$work/token"
for n in 1 2 3; do
	ns=rsdc-n$n
	ip netns add "$ns" || die "netns $ns"
	ip link add "rsdc-v$n" type veth peer name eth0 netns "$ns" || die "veth $n"
	ip link set "rsdc-v$n" master "$br" up
	ip -n "$ns" addr add "10.77.0.$n/24" dev eth0
	# The mesh (node to node) on a network of its own, as an operator
	# would: isolating a node cuts 10.78/24 and leaves it etcd on 10.77/24.
	ip -n "$ns" addr add "10.78.0.$n/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set lo up
	ip netns exec "$ns" "$bin/etcd" --name "n$n" --data-dir "$work/etcd-n$n" \
		--listen-client-urls "http://10.77.0.$n:2379" --advertise-client-urls "http://10.77.0.$n:2379" \
		--listen-peer-urls "http://10.77.0.$n:2380" --initial-advertise-peer-urls "http://10.77.0.$n:2380" \
		--initial-cluster "$initial" --initial-cluster-state new --log-level "${CLUSTER_DEMO_ETCD_LOG:-warn}" >"$work/etcd-n$n.log" 2>&1 &
	pids+=($!)
done
for n in 1 2 3; do
	mkdir -p "$work/n$n"
	cat >"$work/n$n/config.yaml" <<YAML
mesh: {interface: eth0, cidrs: [10.78.0.0/24]}
cluster:
  name: demo
  node: n$n
  advertise: "10.78.0.$n:7946"
  token_file: $work/token
  etcd: {endpoints: [${endpoints//,/, }]}
pools:
  - name: echo
    command: [$bin/flaky]
    replicas: 4
    spares: 2
    contract: {schema: {type: object, required: [answer]}, deadline: 5s}
    context_limit: {entries: 100000, bytes: 64MiB}
YAML
done
startnode() {
	local n=$1
	ip netns exec "rsdc-n$n" "$bin/resilienced" --config "$work/n$n/config.yaml" --socket "$work/n$n.sock" \
		--state-dir "$work/n$n/state" --cgroup-name "resilienced-cdemo-n$n" --arbiter=false \
		${CLUSTER_DEMO_PPROF:+--pprof 127.0.0.1:6060} >>"$work/n$n.log" 2>&1 &
	daemon[$n]=$!
	pids+=($!)
}
declare -a daemon
for n in 1 2 3; do startnode $n; done
for n in 1 2 3; do
	for _ in $(seq 600); do [ -S "$work/n$n.sock" ] && break; sleep 0.1; done
	[ -S "$work/n$n.sock" ] || { tail -20 "$work/n$n.log" >&2; die "node n$n did not start"; }
done
sleep 2 # pools ready, peers connected
echo "cluster-demo: 3 etcd members, 3 nodes up; load for ${seconds}s: SIGKILL n1 at 1/4, cut n2 off at 1/2, back at 3/4, n2 isolated by name through n3 at 7/8 (load average: $(cut -d' ' -f1-3 /proc/loadavg))"

# Each event's time goes to the events file: clusterload breaks the
# gaps down by the phase of the run they fell in.
event() { echo "$1 $(date +%s%3N)" >>"$work/events"; }
: >"$work/events"
"$bin/clusterload" -sockets "$work/n1.sock,$work/n2.sock,$work/n3.sock" -etcd "$endpoints" \
	-sessions 300 -callers 64 -duration "${seconds}s" -events "$work/events" >"$work/result.json" 2>"$work/load.err" &
load=$!
sleep $((seconds / 4))
echo "cluster-demo: SIGKILL of n1's daemon and its agents"
event kill_n1
kill -9 "${daemon[1]}"
for d in $(find /sys/fs/cgroup -maxdepth 3 -type d -name resilienced-cdemo-n1 2>/dev/null); do
	[ -f "$d/cgroup.kill" ] && echo 1 >"$d/cgroup.kill"
done
sleep $((seconds / 4))
# Which etcd member leads when n2 is cut off: if it is n2's, no write
# commits anywhere until the other two elect another (etcd's election
# timeout). CLUSTER_DEMO_ETCD_LEADER=away hands the leadership to n3's
# member first (etcd's MoveLeader), to measure a cut-off node that does
# not lead etcd.
status() { curl -s -m 2 -X POST "http://10.77.0.$1:2379/v3/maintenance/status" -d '{}'; }
field() { grep -o "\"$1\":\"[0-9]*\"" | grep -o '[0-9]\+'; }
leads() { local st; st=$(status "$1"); [ -n "$st" ] && [ "$(printf '%s' "$st" | field member_id)" = "$(printf '%s' "$st" | field leader)" ]; }
if [ "${CLUSTER_DEMO_ETCD_LEADER:-keep}" = away ] && leads 2; then
	curl -s -m 5 -X POST "http://10.77.0.2:2379/v3/maintenance/transfer-leadership" \
		-d "{\"targetID\":\"$(status 3 | field member_id)\"}" >/dev/null
	for _ in $(seq 50); do leads 2 || break; sleep 0.1; done
fi
for n in 1 2 3; do leads $n && echo "cluster-demo: etcd's leader is n$n's member"; done
echo "cluster-demo: n2 cut off (veth down)"
event cut_n2
ip link set rsdc-v2 down
sleep $((seconds / 4))
echo "cluster-demo: n2 back"
event back_n2
ip link set rsdc-v2 up
sleep $((seconds / 8))
echo "cluster-demo: resilientctl isolate --node n2, through n3"
event isolate_n2
ctl() { "$bin/resilientctl" --socket "$work/n3.sock" "$@"; }
# n2 may be between two registrations (its lease ran out while it was
# cut off): a node that is not registered cannot be isolated; try again.
for try in $(seq 50); do
	ctl isolate --node n2 --reason cluster-demo 2>"$work/isolate.err" && break
	[ "$try" = 50 ] && { cat "$work/isolate.err" >&2; echo "cluster-demo: isolate --node n2 failed" >&2; }
	sleep 0.2
done
# Isolated, n2 cuts itself off the mesh (blackhole routes to 10.78/24)
# and keeps etcd (10.77/24).
reach() { ip netns exec "rsdc-n$1" timeout 1 bash -c "</dev/tcp/$2" 2>/dev/null; }
meshcut=0
for _ in $(seq 30); do
	if ! reach 2 10.78.0.3/7946 && reach 2 10.77.0.3/2379; then meshcut=1; break; fi
	sleep 0.1
done
echo "cluster-demo: n2, isolated, cannot reach the mesh and still reaches etcd: $([ $meshcut = 1 ] && echo yes || echo NO)"
wait $load
cat "$work/load.err" >&2
echo "cluster-demo: load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
# What the takeovers cost in etcd (the mesh logs each one's transaction),
# and when the heartbeat took a peer for dead.
for n in 1 2 3; do
	grep -o 'session taken over.*took_ms=[0-9.]*' "$work/n$n.log" | sed 's/.*took_ms=//' | sort -n |
		awk -v n="n$n" '{v[NR]=$1} END {if (NR) printf "cluster-demo: %s took %d sessions over: etcd transaction p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", n, NR, v[int(NR*0.5)+1], v[int(NR*0.99)+1], v[NR]}'
	grep -h 'missed its heartbeats\|refuses the connection\|quorum lost\|lease lost' "$work/n$n.log" | sed "s/^/cluster-demo: n$n: /" | head -8
done
printf 'cluster-demo: etcd "took too long" warnings: %s\n' "$(cat "$work"/etcd-n*.log | grep -c 'took too long')"
# n2, cut off and back, then isolated by name: it must be registered
# and isolated now, and serving again once released.
ctl nodes
health() { ctl nodes | awk '$1 == "n2" {print $3}'; }
rejoined=0
if [ "$(health)" = isolated ] && ctl release --node n2 >/dev/null; then
	for _ in $(seq 100); do
		[ "$(health)" = serving ] && reach 2 10.78.0.3/7946 && rejoined=1 && break
		sleep 0.1
	done
fi
echo "cluster-demo: n2 isolated by name, then released, serving and on the mesh again: $([ $rejoined = 1 ] && echo yes || echo NO)"
result=$(cat "$work/result.json")
echo "$result"
[ $rejoined = 1 ] && [ $meshcut = 1 ] || exit 1
top=${result%%,\"phases\"*} # the run's figures, not a phase's
case $top in
*'"failed":0,'*) ;;
*) exit 1 ;;
esac
for k in lost doubled stale_commits; do
	case $top in *"\"$k\":0"[,}]*) ;; *) exit 1 ;; esac
done
