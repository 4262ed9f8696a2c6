package supervisor

import (
	"testing"
	"time"
)

func TestStallTimeoutFollowsTheDeviationNotTheLoad(t *testing.T) {
	const deadline = 30 * time.Second
	steady := func(d time.Duration) *latencyTracker {
		var l latencyTracker
		for range 200 {
			l.observe(d)
		}
		return &l
	}
	if got := (&latencyTracker{}).stallTimeout(0, deadline); got != deadline {
		t.Fatalf("without a track record: %v, want the deadline", got)
	}
	// Steady fast calls: the floor.
	if got := steady(8*time.Millisecond).stallTimeout(0, deadline); got != stallFloor {
		t.Fatalf("steady 8 ms calls: %v, want the %v floor", got, stallFloor)
	}
	// Steady slow calls: twice the typical latency, however steady.
	if got := steady(time.Second).stallTimeout(0, deadline); got < 2*time.Second || got > 2100*time.Millisecond {
		t.Fatalf("steady 1 s calls: %v, want about 2 s", got)
	}
	// Calls from 1 to 5 s: the deviation widens the margin well past twice
	// the mean.
	var wide latencyTracker
	for i := range 400 {
		wide.observe(time.Duration(1+4*(i%2)) * time.Second)
	}
	if got := wide.stallTimeout(0, deadline); got < 10*time.Second {
		t.Fatalf("calls of 1 and 5 s: %v, want more than 10 s", got)
	}
	if got := wide.stallTimeout(0, 3*time.Second); got != 3*time.Second {
		t.Fatalf("bounded by the deadline: %v", got)
	}
	if got := steady(time.Millisecond).stallTimeout(7*time.Second, deadline); got != 7*time.Second {
		t.Fatalf("configured: %v", got)
	}
}
