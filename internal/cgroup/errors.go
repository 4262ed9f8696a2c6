package cgroup

import "errors"

var (
	// ErrNotSupported means the host lacks what the operation needs: no
	// cgroup2 mount, not allowed to write it (not root), or a kernel without
	// the interface file (cgroup.freeze before 5.2).
	ErrNotSupported = errors.New("cgroup: not supported")

	// ErrBusy means the cgroup still holds processes (or child cgroups), so
	// it cannot be removed yet.
	ErrBusy = errors.New("cgroup: busy")

	// ErrNotExist means the cgroup directory is gone.
	ErrNotExist = errors.New("cgroup: does not exist")

	// ErrExist means an agent cgroup with that pool and name already exists,
	// live in this Manager or left over by a previous instance (see
	// Manager.Reap).
	ErrExist = errors.New("cgroup: already exists")

	// ErrInvalid means a bad name or limit.
	ErrInvalid = errors.New("cgroup: invalid argument")

	// ErrClosed means the Manager has been closed.
	ErrClosed = errors.New("cgroup: manager closed")
)
