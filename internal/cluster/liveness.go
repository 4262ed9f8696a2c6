package cluster

import "time"

// maxSilentTicks bounds the silence allowed to a slow peer: at most this
// many times Misses heartbeats (2 s by default).
const maxSilentTicks = 10

// liveness judges a peer by its heartbeat: how many ticks have passed
// since it last answered, against the silence it is allowed. That is
// Misses ticks, or more when its answers have been slow: srtt + 4·rttvar
// of its round trips, as TCP's retransmission timeout (RFC 6298), so that
// a peer slowed by a loaded machine is not taken for one that is gone;
// never more than maxSilentTicks·Misses. The caller counts a tick that
// came late (its daemon starved of CPU) as one tick, not as the time it
// was away.
type liveness struct {
	every  time.Duration // the heartbeat
	misses int
	silent int // ticks since the last answer

	srtt, rttvar time.Duration
}

// answered records an answer that took rtt.
func (l *liveness) answered(rtt time.Duration) {
	l.silent = 0
	if l.srtt == 0 {
		l.srtt, l.rttvar = rtt, rtt/2
		return
	}
	l.rttvar += (absDuration(l.srtt-rtt) - l.rttvar) / 4
	l.srtt += (rtt - l.srtt) / 8
}

// tick counts one more heartbeat without an answer; it reports whether
// the peer has now been silent for longer than it is allowed.
func (l *liveness) tick() (dead bool) {
	l.silent++
	return l.silent >= l.allowed()
}

// allowed is the number of silent ticks after which the peer is dead.
func (l *liveness) allowed() int {
	if l.srtt == 0 {
		return l.misses
	}
	return min(max(l.misses, int((l.srtt+4*l.rttvar)/l.every)+1), maxSilentTicks*l.misses)
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
