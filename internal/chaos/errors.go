package chaos

import "errors"

// Errors returned by the engine; test them with errors.Is.
var (
	// ErrInvalidSpec: the experiment is malformed (unknown fault kind, a
	// rate of zero, a bad parameter, a blast radius that would fault every
	// agent at once). Nothing was injected.
	ErrInvalidSpec = errors.New("invalid chaos experiment")
	// ErrUnknownTarget: no pool or agent of the target's name.
	ErrUnknownTarget = errors.New("unknown chaos target")
	// ErrBusy: another experiment is running on this daemon.
	ErrBusy = errors.New("a chaos experiment is already running")
	// ErrClosed: the engine is closed (the daemon is stopping).
	ErrClosed = errors.New("chaos engine closed")
	// ErrNotSupported: this host cannot inject the fault (no cgroups, no
	// BPF isolation, not root).
	ErrNotSupported = errors.New("not supported here")
)
