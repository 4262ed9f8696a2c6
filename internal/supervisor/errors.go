package supervisor

import "errors"

// Errors returned by [Supervisor] methods; callers test them with errors.Is.
var (
	// ErrUnknownPool: no pool of that name.
	ErrUnknownPool = errors.New("unknown pool")
	// ErrUnknownAgent: no live agent of that id.
	ErrUnknownAgent = errors.New("unknown agent")
	// ErrPoolFailed: the pool gave up (restart intensity exceeded) and
	// serves no calls until it is restarted.
	ErrPoolFailed = errors.New("pool failed")
	// ErrPoolStopped: the pool is stopping or stopped.
	ErrPoolStopped = errors.New("pool stopped")
	// ErrRetriesExhausted: every attempt of a call failed; the error also
	// wraps the last attempt's cause (a *contract.Violation).
	ErrRetriesExhausted = errors.New("call failed on every attempt")
	// ErrBreakerOpen: the pool's circuit breaker is open; calls fail fast.
	// The error also wraps a *breaker.OpenError, whose RetryAfter says
	// when to try again.
	ErrBreakerOpen = errors.New("circuit breaker open")
	// ErrInvalidInput: the call's input is not valid JSON, breaks the
	// pool's input_schema, or the agent rejected it (JSON-RPC -32602 Invalid params): a caller fault, which
	// is not retried and charges nothing to the pool.
	ErrInvalidInput = errors.New("invalid input")
)

// ErrInvalidTransition: the supervisor tried an illegal move of an agent's
// state (a bug, logged; see [TransitionError]).
var ErrInvalidTransition = errors.New("invalid state transition")
