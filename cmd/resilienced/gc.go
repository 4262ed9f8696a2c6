package main

import (
	"os"
	"runtime/debug"
)

// daemonGCPercent is the daemon's GOGC unless the environment sets one.
//
// Most of the daemon's heap is long-lived and grows with its agents (the
// Registry's ring, the Arbiter's trends, each agent's buffers and state),
// and little is allocated while agents idle. Go's default, GOGC=100, lets
// the heap grow to twice what is live before collecting: at a thousand
// agents ~45 MB live held ~90 MB. At 50 the heap is collected at 1.5
// times what is live; the price is a collection twice as often, which at
// idle is a few a minute, and under load a few per cent of a CPU more (see
// docs/BENCHMARKS.md, "A thousand agents on a small host").
const daemonGCPercent = 50

// tuneGC applies daemonGCPercent when GOGC is not set, and says what it did.
func tuneGC() (percent int, by string) {
	if v, ok := os.LookupEnv("GOGC"); ok && v != "" {
		p := debug.SetGCPercent(100) // read it back: SetGCPercent returns the previous
		debug.SetGCPercent(p)
		return p, "GOGC"
	}
	debug.SetGCPercent(daemonGCPercent)
	return daemonGCPercent, "default"
}
