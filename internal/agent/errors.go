package agent

import (
	"errors"
	"fmt"
)

// Errors returned by [Agent] methods. Callers test them with errors.Is.
var (
	// ErrExited: the process exited (or its stdout closed) before replying.
	ErrExited = errors.New("agent exited")
	// ErrLineTooLong: a line from the agent exceeded the configured maximum.
	ErrLineTooLong = errors.New("agent output line too long")
	// ErrProtocol: the agent wrote something that is not a valid JSON-RPC
	// reply to the call in flight (garbage, a wrong id, a bad envelope).
	ErrProtocol = errors.New("agent protocol error")
	// ErrBusy: a call was made while another was in flight.
	ErrBusy = errors.New("agent busy")
	// ErrLeft: [Pending.Wait] stopped waiting because its leave channel
	// closed; the request is still in flight.
	ErrLeft = errors.New("agent: stopped waiting; the request is still in flight")
	// ErrClosed: the agent was closed by its owner.
	ErrClosed = errors.New("agent closed")
	// ErrNoSuchTool: the MCP server does not offer the pool's tool; found
	// at the handshake, it is a configuration error.
	ErrNoSuchTool = errors.New("no such MCP tool")
)

// RPCError is a JSON-RPC error object returned by the agent.
type RPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("agent returned error %d: %s", e.Code, e.Message)
}
