package chaos

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"time"
)

// HelperArg, as the first argument of the daemon's binary, makes it the
// memory helper of leak and oom faults instead of the daemon.
const HelperArg = "__resilienced_chaos_helper"

// helperNoLimit is the helper's exit code when it allocated its cap without
// being stopped by a memory limit.
const helperNoLimit = 3

// MaybeRunHelper runs the memory helper and exits if the process was
// started as one (os.Args[1] == HelperArg); otherwise it returns at once.
// A main that the engine may start as its helper (the daemon's, a test's
// TestMain) calls it first thing.
func MaybeRunHelper() {
	if len(os.Args) < 2 || os.Args[1] != HelperArg {
		return
	}
	os.Exit(runHelper(os.Args[2:], os.Stdin, os.Stderr))
}

// runHelper is the memory helper: `leak RATE CAP` allocates RATE bytes per
// second, `oom 0 CAP` as fast as it can, until CAP bytes (then it exits
// helperNoLimit) or until it is killed, which is the point: the helper lives
// in an agent's cgroups and its memory counts against the agent's limit.
// It starts once it reads a line on stdin (sent once it is in every cgroup)
// and exits when stdin closes, so it never outlives the engine.
func runHelper(args []string, stdin io.Reader, stderr io.Writer) int {
	if len(args) != 3 {
		fmt.Fprintln(stderr, "chaos helper: want MODE RATE CAP")
		return 2
	}
	mode := args[0]
	rate, err1 := strconv.ParseInt(args[1], 10, 64)
	limit, err2 := strconv.ParseInt(args[2], 10, 64)
	if err1 != nil || err2 != nil || (mode != "leak" && mode != "oom") || limit <= 0 || (mode == "leak" && rate <= 0) {
		fmt.Fprintf(stderr, "chaos helper: bad arguments %q\n", args)
		return 2
	}
	debug.SetGCPercent(-1) // everything is kept: a collector has nothing to do
	in := bufio.NewReader(stdin)
	if _, err := in.ReadString('\n'); err != nil {
		return 0 // the engine went away before the start
	}
	go func() {
		io.Copy(io.Discard, in)
		os.Exit(0) // stdin closed: the fault is undone
	}()

	var keep [][]byte
	var total int64
	grab := func(n int64) {
		b := make([]byte, n)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1 // touch every page: resident, charged to the cgroup
		}
		keep = append(keep, b)
		total += n
	}
	if mode == "oom" {
		for total < limit {
			grab(4 << 20)
		}
		return helperNoLimit
	}
	const tick = 10 * time.Millisecond
	step := max(4096, rate/int64(time.Second/tick))
	t := time.NewTicker(tick)
	defer t.Stop()
	for total < limit {
		<-t.C
		grab(step)
	}
	return helperNoLimit
}
