package main

import "golang.org/x/sys/unix"

// monotonicUsec is CLOCK_MONOTONIC in µs, which RELOADING=1 wants beside it.
func monotonicUsec() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano() / 1000
}
