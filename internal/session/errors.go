package session

import "errors"

var (
	// ErrLocked means the state file is held by another process, usually
	// another resilienced; Open waits Options.LockTimeout for it first.
	ErrLocked = errors.New("locked by another process")

	// ErrClosed is returned by every method once Close has been called.
	ErrClosed = errors.New("session store closed")

	// ErrDuplicate means the idempotency key already has a result: the
	// write was not applied again. Append returns the exchange stored
	// first beside it; Result returns the stored result.
	ErrDuplicate = errors.New("idempotency key already completed")

	// ErrConflict means the idempotency key already has a result for
	// another request (another input or session): answering with that
	// result would be wrong, and running the call would break the key's
	// promise. The caller must use a new key.
	ErrConflict = errors.New("idempotency key used with a different request")

	// ErrNotFound is returned by Get and Delete for a missing key or session.
	ErrNotFound = errors.New("not found")

	// ErrInvalid wraps an unusable argument: an empty or oversized pool,
	// session, key or bucket name.
	ErrInvalid = errors.New("invalid argument")

	// ErrCorrupt means a stored record could not be decoded.
	ErrCorrupt = errors.New("corrupt record")

	// ErrIncompatible means the state file was written by an incompatible
	// version of this package.
	ErrIncompatible = errors.New("incompatible state file format")
)
