#!/usr/bin/env bash
# Issue #13's density benchmark: N lean C echo agents (examples/agents/echo)
# in one pool on default settings, for each N in DENSITY_N:
#   ready     seconds from the daemon's start to N active agents
#   idle      the daemon's CPU (% of one CPU, from /proc/PID/stat) and
#             context switches a second (its threads' /proc status) over
#             DENSITY_IDLE seconds with no calls, and the agents it killed
#             meanwhile (hang, exit, oom events: all spurious here)
#   rss, threads, fds of the daemon at the end of the idle window
#   load      calls/s and p99 under DENSITY_CONCURRENCY callers (resilient-load)
#   recovery  SIGKILL of 10 % of the agents at once: how many recovered
#             events, their recover_ms p99 and max, and the time until the
#             pool is back at strength (its Nth new agent ready after
#             the kill of N, by the daemon's clock), and the agents started
#             until 2 s after that (the spares of a surge with them)
# Beside it, the same N echo agents under runit (runsvdir + one runsv per
# agent, Debian's runit) as the baseline of a supervisor that waits on
# events: its idle CPU, RSS, fds and restart time after the same kill.
#
# Env: DENSITY_N (default "100 1000 2000"), DENSITY_IDLE (60), DENSITY_CALLS
# (20000), DENSITY_CONCURRENCY (64), DENSITY_RUNIT (1: also the baseline),
# DENSITY_PPROF (0; 1 saves a 20 s CPU profile of the idle daemon, a heap
# profile and its goroutine count after the idle window),
# DENSITY_OUT (results directory), DENSITY_REVS (git revisions whose
# daemon also runs, each in a row of its own before the working tree's, in
# the same run: "main" for a before/after). Root (cgroups). Exit 1 if a run
# failed. The summary ends with the idle cost per agent: divided by N, and
# added per agent over the smallest N of the run (DENSITY_N="1 100 1000":
# the first row is the daemon's fixed cost, one agent aside).
set -uo pipefail
cd "$(dirname "$0")/.."
die() { printf 'density-bench: %s\n' "$*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "needs root (agent cgroups)"
command -v python3 >/dev/null || die "needs python3"
ns=${DENSITY_N:-100 1000 2000}
idle=${DENSITY_IDLE:-60}
calls=${DENSITY_CALLS:-20000}
conc=${DENSITY_CONCURRENCY:-64}
runit=${DENSITY_RUNIT:-1}
pprof=${DENSITY_PPROF:-0}
if [ "$runit" = 1 ] && ! command -v runsvdir >/dev/null; then
	die "runit is missing (apt-get install runit), or set DENSITY_RUNIT=0"
fi
repo=$(pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/resilienced-density.XXXXXX")
out=${DENSITY_OUT:-$tmp/out}
mkdir -p "$out"
go build -o "$tmp/bin/" ./cmd/resilienced ./cmd/resilientctl ./cmd/resilient-load || die "build failed"
# daemons: label=binary, the working tree's last.
daemons=()
for rev in ${DENSITY_REVS:-}; do
	sha=$(git rev-parse --short "$rev^{commit}") || die "DENSITY_REVS: no revision $rev"
	mkdir -p "$tmp/src-$sha" "$tmp/bin/$sha"
	git archive "$sha" | tar -x -C "$tmp/src-$sha" || die "git archive $rev failed"
	(cd "$tmp/src-$sha" && go build -o "$tmp/bin/$sha/" ./cmd/resilienced) || die "build of $rev failed"
	rm -rf "$tmp/src-$sha"
	daemons+=("resilienced@$sha=$tmp/bin/$sha/resilienced")
done
daemons+=("resilienced=$tmp/bin/resilienced")
cc -O2 -o "$tmp/bin/echo" examples/agents/echo/echo.c || die "cc examples/agents/echo/echo.c failed"
cp "$tmp/bin/echo" "$tmp/bin/echo-runit" # its own name, so pgrep finds only runit's
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
hz=$(getconf CLK_TCK)
daemon=
rsvd=
follow=
cleanup() {
	[ -n "$follow" ] && kill "$follow" 2>/dev/null
	[ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
	[ -n "$rsvd" ] && stop_runit
	rm -rf "$tmp/bin" "$tmp/sv" "$tmp/state"
}
trap cleanup EXIT

# ticks PID...: user+system CPU ticks of the processes, summed.
ticks() { local s=0 p t; for p in "$@"; do t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) && s=$((s + t)); done; echo $s; }
field() { local s=0 p v; for p in "${@:2}"; do v=$(awk -v k="$1:" '$1 == k {print $2}' "/proc/$p/status" 2>/dev/null) && s=$((s + ${v:-0})); done; echo $s; }
# switches PID: context switches of the process's threads, summed: an idle
# daemon's cost is how often it wakes.
switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches:/ {s += $2} END {print s + 0}'; }
nfds() { local s=0 p; for p in "$@"; do s=$((s + $(ls "/proc/$p/fd" 2>/dev/null | wc -l))); done; echo $s; }
now() { date +%s.%N; }
calc() { python3 -c "print($*)"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
# events MARK: the daemon's events since the epoch time MARK, one JSON a
# line, from a subscription opened when the daemon started (its ring of
# recent events is overrun at thousands of agents).
events() {
	python3 -c '
import json, sys
from datetime import datetime
mark = float(sys.argv[1])
for line in open(sys.argv[2]):
    try: ev = json.loads(line)
    except ValueError: continue
    t = ev["time"].rstrip("Z"); base, _, frac = t.partition(".")
    ts = datetime.fromisoformat(base + "+00:00").timestamp() + float("0." + (frac or "0"))
    if ts >= mark: print(json.dumps(ev))' "$1" "$evfile"
}

echo "resilienced density benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), kernel $(uname -r), $(go version | cut -d' ' -f3)"
echo "commit:  $(git describe --always --dirty 2>/dev/null || echo unknown); idle window ${idle}s; load ${calls} calls x ${conc} callers; results in $out"
echo
fail=0
rows=()
sock=$tmp/s.sock
ctl() { "$tmp/bin/resilientctl" --socket "$sock" "$@"; }

run_resilienced() {
	local n=$1 name=${2%%=*} bin=${2#*=}
	local tag=$n${name#resilienced}
	tag=${tag/@/-}
	local log=$out/daemon-$tag.log
	local kill_n=$(((n + 9) / 10))
	rm -rf "$sock" "$tmp/state"
	cat >"$tmp/pool.yaml" <<-EOF
		version: 1
		pools:
		  - name: echo
		    command: [$tmp/bin/echo]
		    replicas: $n
	EOF
	local pp=()
	[ "$pprof" = 1 ] && pp=(--pprof "127.0.0.1:$((20000 + RANDOM % 20000))")
	local t0
	t0=$(now)
	(cd "$tmp" && exec setsid "$bin" --config "$tmp/pool.yaml" --socket "$sock" --state-dir "$tmp/state" \
		--log-level warn --cgroup-name "density-$$" "${pp[@]}" 2>"$log") &
	daemon=$!
	evfile=$out/events-$tag.jsonl
	for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
	ctl -o json events --follow >"$evfile" 2>/dev/null &
	follow=$!
	# Ready: the pool's active agents are N. The wait counts the agents'
	# ready events in the stream already followed, and asks for the status
	# (every agent's, and a python to read it: a quarter of this 2-CPU
	# machine when it was asked 10 times a second during a 2,000-agent
	# start) only once they are all there, or every 2 s to see a failure.
	local st ready= polls=0
	for _ in $(seq 1200); do
		polls=$((polls + 1))
		if [ "$(grep -c '"kind":"ready"' "$evfile" 2>/dev/null)" -ge "$n" ] || [ $((polls % 20)) = 0 ]; then
			st=$(ctl -o json status 2>/dev/null | python3 -c '
import json, sys
p = json.load(sys.stdin)["pools"][0]
print(p["active"], p["state"])' 2>/dev/null)
			if [ "${st%% *}" = "$n" ]; then ready=$(calc "round($(now) - $t0, 1)"); break; fi
			[ "${st#* }" = failed ] && break
		fi
		kill -0 "$daemon" 2>/dev/null || break
		sleep 0.1
	done
	if [ -z "$ready" ]; then
		echo "!!! resilienced, $n agents: not ready after 120 s (active, state: ${st:-no answer})"
		rows+=("$name $n not-ready(${st// /,}) - - - - - - - - - - - -")
		fail=1
		kill "$follow" 2>/dev/null; wait "$follow" 2>/dev/null
		kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; daemon=
		return
	fi
	sleep 2 # spares and the first telemetry settle
	local since c0 w0 c1 w1 x0 x1 cpu sw rss thr fd kills prof=
	since=$(now)
	c0=$(ticks "$daemon"); w0=$(now); x0=$(switches "$daemon")
	if [ "$pprof" = 1 ]; then
		curl -s -o "$out/idle-$tag.pprof" "http://${pp[1]}/debug/pprof/profile?seconds=$((idle < 20 ? idle : 20))" &
		prof=$!
	fi
	sleep "$idle"
	c1=$(ticks "$daemon"); w1=$(now); x1=$(switches "$daemon")
	[ -n "$prof" ] && wait "$prof"
	local gor=-
	if [ "$pprof" = 1 ]; then
		curl -s -o "$out/heap-$tag.pprof" "http://${pp[1]}/debug/pprof/heap"
		gor=$(curl -s "http://${pp[1]}/debug/pprof/goroutine?debug=1" | sed -n 's/^goroutine profile: total //p')
		curl -s "http://${pp[1]}/debug/pprof/heap?debug=1" | grep -E '^# (HeapAlloc|HeapSys|HeapIdle|HeapInuse|HeapReleased|Stack|Sys|NextGC|NumGC) ' >"$out/memstats-$tag.txt"
	fi
	cpu=$(calc "round(100 * ($c1 - $c0) / $hz / ($w1 - $w0), 2)")
	sw=$(calc "round(($x1 - $x0) / ($w1 - $w0))")
	rss=$(calc "round($(field VmRSS "$daemon") / 1024, 1)")
	thr=$(field Threads "$daemon")
	fd=$(nfds "$daemon")
	kills=$(events "$since" | python3 -c '
import json, sys
n = 0
for line in sys.stdin:
    try: ev = json.loads(line)
    except ValueError: continue
    n += ev.get("kind") in ("hang", "exit", "oom", "violation", "spawn_failed")
print(n)')
	st=$(ctl -o json status 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["pools"][0]["state"])')
	[ "$kills" = 0 ] && [ "$st" = running ] || fail=1

	local lo cps p99
	lo=$("$tmp/bin/resilient-load" run --socket "$sock" --pool echo --calls "$calls" --concurrency "$conc" --quiet 2>&1)
	cps=$(sed -n 's/.*(\([0-9.]*\) calls\/s.*/\1/p' <<<"$lo")
	p99=$(sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p' <<<"$lo")
	echo "$lo" >"$out/load-$tag.txt"

	# Kill 10 % of the active agents at once. Their recovered events are
	# taken from a subscription opened before, not from the daemon's ring
	# of recent events, which later events may overrun.
	local victims k0 back= rec
	victims=$(ctl -o json agents echo 2>/dev/null | python3 -c '
import json, random, sys
a = [(x["id"], x["pid"]) for x in json.load(sys.stdin) if x["state"] == "active"]
for id, pid in random.sample(a, min(int(sys.argv[1]), len(a))): print(id, pid)' "$kill_n")
	# The wait counts lines in the stream already followed (grep, from
	# the stream's size at the kill): a python parse of every event ten
	# times a second took a CPU from the recovery it measured. The
	# figures come from the daemon's own timestamps afterwards: recovered
	# events (recover_ms), and back at strength at the kill_n-th ready
	# event after the kill (one new agent per death; a surge's spares
	# come on top).
	local off
	off=$(stat -c %s "$evfile")
	k0=$(now)
	# shellcheck disable=SC2046
	kill -KILL $(cut -d' ' -f2 <<<"$victims")
	for _ in $(seq 600); do
		[ "$(tail -c +$((off + 1)) "$evfile" | grep -c '"kind":"recovered"')" -ge "$kill_n" ] &&
			[ "$(tail -c +$((off + 1)) "$evfile" | grep -c '"kind":"ready"')" -ge "$kill_n" ] && break
		sleep 0.1
	done
	sleep 2 # starts that follow the recovery (a surge's spares) are counted too
	read -r rec starts back < <(events "$k0" | python3 -c '
import json, sys
from datetime import datetime
ids = set(l.split()[0] for l in sys.argv[1].splitlines() if l.strip())
k0, n = float(sys.argv[2]), int(sys.argv[3])
def ts(t):
    base, _, frac = t.rstrip("Z").partition(".")
    return datetime.fromisoformat(base + "+00:00").timestamp() + float("0." + (frac or "0"))
rs, ready, starts = [], [], 0
for line in sys.stdin:
    try: ev = json.loads(line)
    except ValueError: continue
    if ev.get("kind") == "recovered" and ev.get("agent") in ids: rs.append(ev.get("recover_ms", 0))
    if ev.get("kind") == "ready": ready.append(ts(ev["time"]))
    starts += ev.get("kind") == "spawn"
rs.sort(); ready.sort()
rec = "%d/%s/%s" % (len(rs), round(rs[min(len(rs) - 1, int(len(rs) * 0.99))], 1), round(rs[-1], 1)) if rs else "0/-/-"
print(rec, starts, round(1000 * (ready[n - 1] - k0)) if len(ready) >= n and len(rs) >= n else "")' "$victims" "$k0" "$kill_n")
	st=$(ctl -o json status 2>/dev/null | python3 -c 'p = __import__("json").load(__import__("sys").stdin)["pools"][0]; print(p["active"], p["state"])')
	[ "${st%% *}" = "$n" ] || back=
	[ -n "$back" ] || { back="not-back(${st// /,})"; fail=1; }
	rows+=("$name $n $ready $cpu $sw $rss $thr $fd $kills ${cps:--} ${p99:--} $rec $back $starts")
	echo "$name $n agents: ready ${ready}s; idle ${cpu}% CPU, ${sw} switches/s, RSS ${rss} MB, ${thr} threads, ${fd} fds, ${gor} goroutines, ${kills} killed; ${cps:--} calls/s p99 ${p99:--} ms; killed ${kill_n}: recovered n/p99/max ${rec} ms, back at strength in ${back} ms, ${starts} starts until 2 s after   (load $(load))"
	if [ -n "$prof" ]; then
		go tool pprof -top -nodecount 25 "$bin" "$out/idle-$tag.pprof" >"$out/idle-$tag.top" 2>/dev/null
		go tool pprof -top -sample_index=inuse_space -nodecount 25 "$bin" "$out/heap-$tag.pprof" >"$out/heap-$tag.top" 2>/dev/null
	fi
	kill "$follow" 2>/dev/null; wait "$follow" 2>/dev/null
	kill -TERM "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; daemon=
}

stop_runit() {
	local d
	for d in $rsvd; do kill -HUP "$d" 2>/dev/null; done # TERM to every runsv, which stops its service
	for d in $rsvd; do wait "$d" 2>/dev/null; done
	for _ in $(seq 100); do pgrep -x runsv -P "${rsvd// /,}" >/dev/null || break; sleep 0.1; done
	rsvd=
}

run_runit() {
	local n=$1 kill_n=$(((n + 9) / 10)) i
	rm -rf "$tmp/sv"
	# runsvdir watches at most 1,000 services (MAXSERVICES in runit's
	# runsvdir.c): one runsvdir per 1,000, as an operator of more would run.
	local d
	for i in $(seq "$n"); do
		d=$tmp/sv/$(((i - 1) / 1000))/echo-$i
		mkdir -p "$d"
		mkfifo "$d/in"
		# stdin from a FIFO opened read-write: it never sees EOF, as the
		# agents under resilienced never do.
		printf '#!/bin/sh\nexec %s <>in >/dev/null 2>&1\n' "$tmp/bin/echo-runit" >"$d/run"
		chmod +x "$d/run"
	done
	local t0 ready= got
	t0=$(now)
	rsvd=
	for d in "$tmp"/sv/*; do
		setsid runsvdir "$d" </dev/null >/dev/null 2>&1 &
		rsvd="${rsvd:+$rsvd }$!"
	done
	for _ in $(seq 1200); do
		got=$(pgrep -c -x echo-runit)
		if [ "$got" -ge "$n" ]; then ready=$(calc "round($(now) - $t0, 1)"); break; fi
		sleep 0.1
	done
	[ -n "$ready" ] || { echo "!!! runit, $n agents: only $got running after 120 s"; ready="not-ready($got)"; }
	sleep 2
	local sv c0 w0 c1 w1 cpu rss fd thr
	mapfile -t sv < <(pgrep -x runsv -P "${rsvd// /,}")
	# shellcheck disable=SC2086 # one pid per runsvdir
	c0=$(ticks $rsvd "${sv[@]}"); w0=$(now)
	sleep "$idle"
	# shellcheck disable=SC2086
	c1=$(ticks $rsvd "${sv[@]}"); w1=$(now)
	cpu=$(calc "round(100 * ($c1 - $c0) / $hz / ($w1 - $w0), 2)")
	# shellcheck disable=SC2086
	rss=$(calc "round($(field VmRSS $rsvd "${sv[@]}") / 1024, 1)")
	# shellcheck disable=SC2086
	thr=$(field Threads $rsvd "${sv[@]}")
	# shellcheck disable=SC2086
	fd=$(nfds $rsvd "${sv[@]}")
	# Kill 10 % of the agents; each is back once its runsv has started a
	# new process (supervise/pid changed), polled every 5 ms.
	local back
	back=$(python3 -c '
import glob, os, random, signal, sys, time
n = int(sys.argv[2])
def pid(d):
    try: return open(d + "/supervise/pid").read().strip()
    except OSError: return ""
svs = [(d, pid(d)) for d in glob.glob(sys.argv[1] + "/sv/*/*")]
victims = random.sample([v for v in svs if v[1]], n)
t0 = time.time()
for _, p in victims: os.kill(int(p), signal.SIGKILL)
left = dict(victims)
while left and time.time() - t0 < 60:
    for d, old in list(left.items()):
        p = pid(d)
        if p and p != old: del left[d]
    time.sleep(0.005)
print(round(1000 * (time.time() - t0)) if not left else "not-back(%d)" % len(left))' "$tmp" "$kill_n")
	rows+=("runit $n $ready $cpu - $rss $thr $fd - - - - $back $kill_n")
	echo "runit       $n agents: ready ${ready}s; idle ${cpu}% CPU ($(wc -w <<<"$rsvd") runsvdir + ${#sv[@]} runsv), RSS ${rss} MB, ${thr} threads, ${fd} fds; killed ${kill_n}: back at strength in ${back} ms   (load $(load))"
	stop_runit
}

for n in $ns; do
	echo "=== $n agents   (load $(load))"
	for d in "${daemons[@]}"; do run_resilienced "$n" "$d"; done
	[ "$runit" = 1 ] && run_runit "$n"
done

echo
echo "=== summary (idle CPU: % of one CPU over ${idle}s; per agent: idle CPU and RSS divided by N)"
{
	echo "supervisor agents ready_s idle_cpu_% switches/s rss_MB threads fds idle_kills calls/s p99_ms recovered/p99_ms/max_ms back_ms starts"
	printf '%s\n' "${rows[@]}"
} | column -t
# Idle cost per agent: CPU and RSS divided by N, and, beside it, what each
# agent adds over the same supervisor's smallest N in this run ((cost(N) -
# cost(N0)) / (N - N0)): the daemon's fixed cost (runtime, tickers, API)
# shared by fewer agents makes the first figure fall with N even when
# nothing per agent changes.
echo
echo "=== idle cost per agent (CPU: % of one CPU; RSS: MB)"
printf '%s\n' "${rows[@]}" | python3 -c '
import sys
rows = [l.split() for l in sys.stdin if l.strip()]
first = {}
print("supervisor agents cpu/agent rss/agent cpu/added-agent rss/added-agent over")
for r in rows:
    try: name, n, cpu, rss = r[0], int(r[1]), float(r[3]), float(r[5])
    except (ValueError, IndexError): continue
    f = first.setdefault(name, (n, cpu, rss))
    added = ("%.5f %.4f %d" % ((cpu - f[1]) / (n - f[0]), (rss - f[2]) / (n - f[0]), f[0])) if n > f[0] else "- - -"
    print("%s %d %.5f %.4f %s" % (name, n, cpu / n, rss / n, added))' | column -t
exit $fail
