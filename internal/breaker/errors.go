package breaker

import (
	"errors"
	"fmt"
	"time"
)

// ErrOpen is wrapped by the error [Breaker.Allow] returns while the circuit
// is open, or half-open with its probe call in flight. The error is an
// [*OpenError] that says why and when to retry.
var ErrOpen = errors.New("circuit open")

// OpenError is the error [Breaker.Allow] returns while calls are refused.
// It unwraps to [ErrOpen].
type OpenError struct {
	Pool string
	// Failures and Calls are the counts in the window when the breaker
	// tripped on its failure ratio.
	Failures, Calls int
	// StartFailures is the number of agents in a row that failed their
	// first call, when that tripped the breaker.
	StartFailures int
	// ProbeFailed is set when the breaker reopened because its half-open
	// probe failed.
	ProbeFailed bool
	// ProbeInFlight is set when the breaker is half-open and its one probe
	// call has not finished.
	ProbeInFlight bool
	// Cause is the last failure's cause, as the supervisor reported it.
	Cause string
	// RetryIn is how long until the next probe is allowed.
	RetryIn time.Duration
}

func (e *OpenError) Error() string {
	retry := formatRetry(e.RetryIn)
	var s string
	switch {
	case e.ProbeInFlight:
		s = fmt.Sprintf("pool %s: circuit half-open, probe call in flight; retry in %s", e.Pool, retry)
	case e.ProbeFailed:
		s = fmt.Sprintf("pool %s: circuit open after the half-open probe failed; retry in %s", e.Pool, retry)
	case e.StartFailures > 0:
		s = fmt.Sprintf("pool %s: circuit open after %d new agents in a row failed their first call; retry in %s", e.Pool, e.StartFailures, retry)
	default:
		s = fmt.Sprintf("pool %s: circuit open after %d of %d calls failed; retry in %s", e.Pool, e.Failures, e.Calls, retry)
	}
	if e.Cause != "" {
		s += "; last cause: " + e.Cause
	}
	return s
}

func (e *OpenError) Unwrap() error { return ErrOpen }

// RetryAfter is how long a caller should wait before trying again (the
// API sends it as Retry-After).
func (e *OpenError) RetryAfter() time.Duration { return e.RetryIn }

// formatRetry rounds a wait for people: 3s, 2.5s, 250ms.
func formatRetry(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	default:
		return max(d.Round(time.Millisecond), time.Millisecond).String()
	}
}
