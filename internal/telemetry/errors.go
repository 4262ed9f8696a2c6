package telemetry

import "errors"

var (
	// ErrNotSupported means this host cannot provide the requested telemetry:
	// not root, no kernel BTF, a program the kernel refuses, a missing
	// tracepoint, or no PSI files. The wrapping error says which.
	ErrNotSupported = errors.New("telemetry: not supported")

	// ErrNotWatched is returned for a cgroup that is not being watched.
	ErrNotWatched = errors.New("telemetry: cgroup not watched")

	// ErrWatchLimit is returned by Watch when every counter slot is in use.
	ErrWatchLimit = errors.New("telemetry: too many watched cgroups")

	// ErrClosed is returned by the methods of closed Probes.
	ErrClosed = errors.New("telemetry: probes closed")
)
