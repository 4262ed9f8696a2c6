package main

import (
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/supervisor"
)

// The Arbiter sees the mean latency of the calls since the last sample, not
// the supervisor's slow EWMA: on a ramp, the latest calls are what matter.
func TestLatStateMeanSinceLastSample(t *testing.T) {
	var l latState
	st := supervisor.AgentStatus{Latency: 10 * time.Millisecond, OKCalls: 10, LatencyTotal: 100 * time.Millisecond}
	l = l.next(st)
	if l.mean != 10*time.Millisecond {
		t.Fatalf("first sample: mean %v, want 10ms", l.mean)
	}
	// Five calls of 500 ms each; the EWMA has barely moved.
	st.Latency, st.OKCalls, st.LatencyTotal = 20*time.Millisecond, 15, 100*time.Millisecond+5*500*time.Millisecond
	l = l.next(st)
	if l.mean != 500*time.Millisecond {
		t.Fatalf("after five 500ms calls: mean %v, want 500ms", l.mean)
	}
	// No call succeeded since: the last mean stands.
	if l = l.next(st); l.mean != 500*time.Millisecond {
		t.Fatalf("without calls: mean %v, want 500ms kept", l.mean)
	}
	// A new agent under the same id (counters restart): no negative mean.
	st = supervisor.AgentStatus{Latency: 3 * time.Millisecond, OKCalls: 2, LatencyTotal: 6 * time.Millisecond}
	if l = l.next(st); l.mean != 3*time.Millisecond {
		t.Fatalf("after a counter reset: mean %v", l.mean)
	}
}
