package main

import (
	"fmt"
	"os"
	"runtime"
)

// daemonProcs is how many CPUs the daemon's Go runtime runs on: flag when
// set (> 0); else the GOMAXPROCS environment variable, when set, as the Go
// runtime already applied it; else half of what the runtime would use (its
// default honours the cgroup's CPU limit), rounded up.
//
// Why half: the daemon's work per call is short hand-offs between the
// caller's socket and an agent's pipes, and the agents need the CPUs. Each
// extra runtime thread that wakes an idle CPU for a hand-off costs an
// inter-processor interrupt, which on a small virtual machine costs more
// than the hand-off itself: on the 2-CPU test VM, one CPU for the daemon
// served 10-40 % more calls per second through the socket than two
// (docs/BENCHMARKS.md).
func daemonProcs(flag int, env string, runtimeDefault int) (int, string, error) {
	switch {
	case flag < 0:
		return 0, "", fmt.Errorf("--procs: %d is negative; 0 means half the CPUs", flag)
	case flag > 0:
		return flag, "--procs", nil
	case env != "":
		return runtimeDefault, "GOMAXPROCS", nil
	}
	return max(1, (runtimeDefault+1)/2), "half the CPUs", nil
}

// setProcs applies daemonProcs and says what it chose.
func setProcs(flag int) (n int, why string, err error) {
	n, why, err = daemonProcs(flag, os.Getenv("GOMAXPROCS"), runtime.GOMAXPROCS(0))
	if err != nil {
		return 0, "", err
	}
	runtime.GOMAXPROCS(n)
	return n, why, nil
}
