package ring

import "golang.org/x/sys/unix"

// threadCPU is the CPU time consumed by the calling OS thread, in ns. On a
// shared machine wall-clock ns/op also counts time spent waiting for a CPU;
// thread CPU time does not (the caller locks itself to its thread).
func threadCPU() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}
