package cluster

import (
	"testing"
	"time"
)

// A peer that has never answered, or answers fast, is dead after Misses
// silent ticks, and any answer starts the count again.
func TestLivenessFastPeer(t *testing.T) {
	l := liveness{every: 50 * time.Millisecond, misses: 4}
	for i := 1; i < 4; i++ {
		if l.tick() {
			t.Fatalf("dead after %d silent ticks, want 4", i)
		}
	}
	if !l.tick() {
		t.Fatal("alive after 4 silent ticks")
	}
	l.answered(2 * time.Millisecond)
	if l.tick() {
		t.Fatal("dead on the first tick after an answer")
	}
}

// A peer whose answers take about three heartbeats each (a loaded
// machine) is allowed more silence than Misses ticks once its round trips
// are known, and is dead when that silence has passed.
func TestLivenessSlowPeerIsAllowedItsRoundTrips(t *testing.T) {
	every := 50 * time.Millisecond
	l := liveness{every: every, misses: 4}
	rtts := []time.Duration{150, 180, 140, 190, 160, 170, 150, 180}
	for round := range 20 {
		if l.tick() && round > 0 {
			t.Fatalf("round %d: a peer answering on every tick was taken for dead", round)
		}
		l.answered(rtts[round%len(rtts)] * time.Millisecond)
	}
	allowed := l.allowed()
	if allowed <= 4 {
		t.Fatalf("allowed silence %d ticks for answers of 140-190 ms at 50 ms heartbeats, want more than 4", allowed)
	}
	for i := 1; i < allowed; i++ {
		if l.tick() {
			t.Fatalf("dead after %d silent ticks, allowed %d", i, allowed)
		}
	}
	if !l.tick() {
		t.Fatalf("alive after %d silent ticks", allowed)
	}
}

// However slow its answers were, a peer is allowed no more than
// maxSilentTicks·Misses ticks of silence.
func TestLivenessSilenceIsBounded(t *testing.T) {
	l := liveness{every: 50 * time.Millisecond, misses: 4}
	l.answered(time.Minute)
	if got, want := l.allowed(), maxSilentTicks*4; got != want {
		t.Fatalf("allowed %d ticks after a one-minute answer, want the bound %d", got, want)
	}
}
