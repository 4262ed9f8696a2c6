package api

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Error codes carried in error responses.
const (
	CodeBadRequest = "bad_request"
	// CodeInvalidInput: the call's input is not valid JSON, or the agent
	// refused it (JSON-RPC -32602): the caller's fault, not retried.
	CodeInvalidInput = "invalid_input"
	// CodeIdempotencyConflict: the idempotency key already answered
	// another request (409).
	CodeIdempotencyConflict = "idempotency_conflict"
	// CodeDependencyUnavailable: the pool's agents answered that what
	// they depend on is unavailable (503).
	CodeDependencyUnavailable = "dependency_unavailable"
	// CodeInvalidConfig: a reload found the config file invalid; the
	// message has every error, one per line (400).
	CodeInvalidConfig = "invalid_config"
	CodeNotFound      = "not_found"
	CodeUnknownPool   = "unknown_pool"
	CodeUnknownAgent  = "unknown_agent"
	CodeForbidden     = "forbidden"
	CodeTooLarge      = "too_large"
	CodePoolFailed    = "pool_failed"
	CodeBreakerOpen   = "breaker_open"
	CodeCallFailed    = "call_failed"
	CodeTimeout       = "timeout"
	CodeUnavailable   = "unavailable"
	CodeInternal      = "internal"

	// CodeNoQuorum: cluster mode, a session call while etcd has no
	// quorum (503, Retry-After): sessionless calls go on.
	CodeNoQuorum = "no_quorum"
	// CodeNodeIsolated: cluster mode, a session call to a node isolated
	// by `resilientctl isolate --node` (503): the caller goes to another
	// node; this one is cut off its peers.
	CodeNodeIsolated = "node_isolated"
)

// Error is an error answered by the daemon.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// Retry is the wait the daemon asked for before trying again (its
	// Retry-After header, whole seconds); 0 when it asked none.
	Retry time.Duration `json:"-"`
}

func (e *Error) Error() string { return e.Message }

// RetryAfter returns e.Retry: an *Error answered again, by a program that
// serves the API's errors on, keeps the daemon's hint.
func (e *Error) RetryAfter() time.Duration { return e.Retry }

// retryHinter is an error that says how long to wait before trying again:
// the supervisor's breaker, open, says when it will let a call through.
// It is defined here, where it is used, so that the supervisor need not
// know of HTTP; WriteError finds it with errors.As, anywhere in the chain.
type retryHinter interface {
	RetryAfter() time.Duration
}

// retryAfter returns the Retry-After header's value for err: the wait its
// chain asks for, in whole seconds rounded up (a hint of 300 ms is "1", not
// "0", which would invite a retry at once); "" when there is none.
func retryAfter(err error) string {
	var h retryHinter
	if !errors.As(err, &h) {
		return ""
	}
	d := h.RetryAfter()
	if d <= 0 {
		return ""
	}
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}

// ErrStreamClosed: a call stream's sending side was closed (CloseSend,
// Close, or the stream ended).
var ErrStreamClosed = errors.New("call stream closed")

// ErrUnreachable: the daemon could not be reached at the socket.
var ErrUnreachable = errors.New("daemon unreachable")

// UnreachableError says where the client looked.
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach resilienced at %s: %v (is it running? start it with `systemctl start resilienced` or `resilienced --config FILE`; or point --socket / RESILIENT_SOCKET at its socket)", e.Socket, e.Err)
}

func (e *UnreachableError) Unwrap() error { return ErrUnreachable }
