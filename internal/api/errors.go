package api

import (
	"errors"
	"fmt"
)

// Error codes carried in error responses.
const (
	CodeBadRequest   = "bad_request"
	CodeNotFound     = "not_found"
	CodeUnknownPool  = "unknown_pool"
	CodeUnknownAgent = "unknown_agent"
	CodeForbidden    = "forbidden"
	CodeTooLarge     = "too_large"
	CodePoolFailed   = "pool_failed"
	CodeBreakerOpen  = "breaker_open"
	CodeCallFailed   = "call_failed"
	CodeTimeout      = "timeout"
	CodeUnavailable  = "unavailable"
	CodeInternal     = "internal"
)

// Error is an error answered by the daemon.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

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
