package telemetry

import (
	"testing"
	"time"
)

func TestLatencyQuantile(t *testing.T) {
	var empty Counters
	if got := empty.LatencyQuantile(0.5); got != 0 {
		t.Errorf("empty histogram: %v, want 0", got)
	}

	// 100 syscalls in [1024, 2048) ns, 100 in [1 ms ~ 2^20, 2^21) ns.
	var c Counters
	c.LatencyHist[10] = 100
	c.LatencyHist[20] = 100
	for _, tc := range []struct {
		q      float64
		lo, hi time.Duration
	}{
		{0, 1024, 1024},
		{0.25, 1024, 2048},
		{0.5, 2047, 2048},
		{0.75, 1 << 20, 1 << 21},
		{0.99, 1 << 20, 1 << 21},
		{1, 1 << 21, 1 << 21},
		{-1, 1024, 1024}, // clamped
		{2, 1 << 21, 1 << 21},
	} {
		got := c.LatencyQuantile(tc.q)
		if got < tc.lo || got > tc.hi {
			t.Errorf("q=%v: %v, want in [%v, %v]", tc.q, got, tc.lo, tc.hi)
		}
	}
	// Quantiles never decrease with q.
	prev := time.Duration(0)
	for q := 0.0; q <= 1; q += 0.01 {
		got := c.LatencyQuantile(q)
		if got < prev {
			t.Fatalf("q=%v: %v < %v at a lower q", q, got, prev)
		}
		prev = got
	}

	var zero Counters
	zero.LatencyHist[0] = 4
	if got := zero.LatencyQuantile(1); got != 2 {
		t.Errorf("bucket 0 upper bound: %v, want 2ns", got)
	}
	var top Counters
	top.LatencyHist[HistBuckets-1] = 1
	if got := top.LatencyQuantile(0.5); got < 1<<31 {
		t.Errorf("top bucket median: %v, want >= 2^31 ns", got)
	}
}

func TestCountersSub(t *testing.T) {
	a := Counters{Syscalls: 10, SyscallErrors: 2, RxBytes: 100, TxBytes: 50, RxPackets: 3, TxPackets: 2, Retransmits: 1, Resets: 1}
	a.LatencyHist[3] = 7
	b := Counters{Syscalls: 25, SyscallErrors: 2, RxBytes: 160, TxBytes: 90, RxPackets: 5, TxPackets: 4, Retransmits: 4, Resets: 1}
	b.LatencyHist[3] = 9
	b.LatencyHist[4] = 13
	want := Counters{Syscalls: 15, RxBytes: 60, TxBytes: 40, RxPackets: 2, TxPackets: 2, Retransmits: 3}
	want.LatencyHist[3] = 2
	want.LatencyHist[4] = 13
	if got := b.Sub(a); got != want {
		t.Errorf("Sub = %+v, want %+v", got, want)
	}
}
