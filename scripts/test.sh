#!/usr/bin/env bash
# Runs every package's tests and closes with one summary line
# "N passed, N failed, N skipped" counted from go test's own verdicts.
# With the race detector on, as cilium, containerd and tailscale run theirs.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
go test -race -count=1 -timeout 30m -v ./... 2>&1 | tee "$log" | grep -E '^(=== RUN|--- (PASS|FAIL|SKIP)|ok |FAIL|panic:|\s+--- )' | grep -v '^=== RUN' 
status=${PIPESTATUS[0]}
passed=$(grep -cE '^\s*--- PASS' "$log")
failed=$(grep -cE '^\s*--- FAIL' "$log")
skipped=$(grep -cE '^\s*--- SKIP' "$log")
echo
# go test -v prints a skip's reason on the line before its "--- SKIP".
grep -E '^\s*--- SKIP' -B1 "$log" | grep -vE '^(--|\s*--- SKIP|=== )' | sed 's/^ */skip reason: /' | sort | uniq -c | sort -rn | head -20
# Why each failure failed: the failing tests' own log lines.
if [ "$failed" -gt 0 ]; then
	echo
	echo "failures, with their tests' log lines:"
	# Each failed test's own lines, from its RUN to its FAIL (go test -v
	# prints a package's tests in order, parallel ones aside).
	grep -oE -- '--- FAIL: [^ ]+' "$log" | awk '{print $3}' | awk '!seen[$0]++' | while read -r name; do
		echo "--- FAIL: $name"
		awk -v n="$name" '$1 == "===" && $3 == n {p = 1} p && /_test\.go:[0-9]+:|leakcheck|panic:/ {print} $1 == "---" && $3 == n {p = 0}' "$log" | head -40
	done
fi
echo
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
exit "$status"
