package main

import (
	"testing"
	"time"
)

func TestLatencyText(t *testing.T) {
	for _, tc := range []struct {
		p50, p99 time.Duration
		n        uint64
		want     string
	}{
		{0, 0, 0, "n/a (no syscall timed)"},
		{2 * time.Microsecond, 0, 40, "p50 2µs, p99 n/a (40 syscalls timed)"},
		{2 * time.Microsecond, 90 * time.Microsecond, 500, "p50 2µs, p99 90µs (500 syscalls timed)"},
	} {
		if got := latencyText(tc.p50, tc.p99, tc.n); got != tc.want {
			t.Errorf("latencyText(%v, %v, %d) = %q, want %q", tc.p50, tc.p99, tc.n, got, tc.want)
		}
	}
}
