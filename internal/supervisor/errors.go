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
	// ErrIdempotencyConflict: the call's idempotency key already has a
	// result for another request (another input or session). Nothing
	// ran; the caller must use a new key. It wraps session.ErrConflict.
	ErrIdempotencyConflict = errors.New("idempotency key conflict")
	// ErrScaleRefused: a scale beyond what the pool allows without being
	// told (over its bound, or to 0).
	ErrScaleRefused = errors.New("scale refused")
	// ErrDependencyUnavailable: on every attempt the agent answered that
	// something it depends on is unavailable (JSON-RPC -32030); no agent
	// was replaced. The error also wraps the last agent's *agent.RPCError.
	ErrDependencyUnavailable = errors.New("a dependency of the pool's agents is unavailable")
)

// ErrInvalidTransition: the supervisor tried an illegal move of an agent's
// state (a bug, logged; see [TransitionError]).
var ErrInvalidTransition = errors.New("invalid state transition")
