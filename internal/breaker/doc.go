// Package breaker is a pool's circuit breaker: closed, open, half-open.
//
// It counts calls, not attempts: the supervisor reports a call's outcome
// once, after its retries, so agents that fail now and then while every
// call still succeeds on retry never open it. It opens when, over a
// sliding window, at least MinCalls calls ended and at least FailureRatio
// of them failed after their retries; or when StartStreak agents in a row
// failed their first call after starting (the model or its upstream is
// down, and every new agent dies on its first call). Open, it refuses
// calls at once with an [*OpenError] that names the last cause and says
// when to retry, and the supervisor starts no agents. After the cool-down
// it is half-open: one probe call goes through; success closes it, failure
// opens it again with the cool-down doubled, up to MaxOpenFor.
//
// This is not a wrapper around sony/gobreaker/v2, although its model fits
// (Interval + BucketPeriod is a sliding window, ReadyToTrip sees Counts,
// Timeout is open_for, one half-open probe): gobreaker reads time.Now
// directly, so its windows and timeouts cannot be driven by an injected
// clock in tests; it does not expose when the open state ends, which a
// caller's Retry-After and the supervisor's paused spawns need; it has no
// doubling cool-down and no second trip condition (failed starts). What
// remains is small enough to own.
package breaker
