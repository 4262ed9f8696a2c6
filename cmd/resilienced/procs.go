package main

import (
	"fmt"
	"os"
	"runtime"
)

// daemonProcs is how many CPUs the daemon's Go runtime runs on: --procs
// when set (> 0); else what the runtime chose (GOMAXPROCS when set, else
// the CPUs the cgroup allows).
//
// Why not fewer by default: on the 2-CPU test VM one CPU served 25 % more
// sessionless calls per second through the socket than two (fewer wake-ups
// of an idle CPU, each an inter-processor interrupt), but half the durable
// session calls: bbolt's fdatasync holds the only P until the runtime's
// monitor takes it back, and the callers that would join the next group
// commit cannot run meanwhile (docs/BENCHMARKS.md). --procs is there for
// nodes that serve no sessions.
func daemonProcs(flag, runtimeDefault int) (int, string, error) {
	switch {
	case flag < 0:
		return 0, "", fmt.Errorf("--procs: %d is negative; 0 means the runtime's choice", flag)
	case flag > 0:
		return flag, "--procs", nil
	case os.Getenv("GOMAXPROCS") != "":
		return runtimeDefault, "GOMAXPROCS", nil
	}
	return runtimeDefault, "the CPUs allowed", nil
}

// setProcs applies daemonProcs and says what it chose.
func setProcs(flag int) (n int, why string, err error) {
	n, why, err = daemonProcs(flag, runtime.GOMAXPROCS(0))
	if err != nil {
		return 0, "", err
	}
	runtime.GOMAXPROCS(n)
	return n, why, nil
}
