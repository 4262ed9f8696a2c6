package mcp

import "errors"

// Errors of the front door.
var (
	// ErrUnknownPool: a per-pool endpoint named no pool the daemon serves.
	ErrUnknownPool = errors.New("mcp: unknown pool")
	// ErrTokens: the tokens file could not be read or holds no token.
	ErrTokens = errors.New("mcp: tokens file")
)
