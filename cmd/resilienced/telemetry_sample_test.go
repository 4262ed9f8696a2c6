package main

import (
	"testing"
	"time"
)

// Idle agents cost a bounded number of samples a second, however many.
func TestIdleSampleEveryBoundsTheRate(t *testing.T) {
	for _, n := range []int{1, 100, 1000, 2000, 10000} {
		every := idleSampleEvery(n)
		if every < 10*time.Second {
			t.Errorf("idleSampleEvery(%d) = %v, want >= 10s", n, every)
		}
		if rate := float64(n) / every.Seconds(); rate > idleSamplesPerSecond+1 {
			t.Errorf("%d idle agents sampled every %v: %.0f samples/s, want <= %d", n, every, rate, idleSamplesPerSecond)
		}
	}
}
