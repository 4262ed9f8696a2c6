package isolate

import "errors"

var (
	// ErrNotSupported means the kernel or the privileges of the process do
	// not allow BPF isolation (not root, no cgroup v2, no bpffs).
	ErrNotSupported = errors.New("isolate: not supported")

	// ErrInvalidPolicy means a network policy could not be parsed.
	ErrInvalidPolicy = errors.New("invalid network policy")

	// ErrInvalidAgentID means an agent id cannot name a pin directory.
	ErrInvalidAgentID = errors.New("invalid agent id")

	// ErrUnknownAgent means the Switch holds nothing for the agent.
	ErrUnknownAgent = errors.New("unknown agent")

	// ErrCgroupMismatch means the agent id is already attached to another
	// live cgroup; release it first.
	ErrCgroupMismatch = errors.New("agent attached to another cgroup")

	// ErrNodeIsolated means the node is already isolated from a different
	// mesh or in a different mode.
	ErrNodeIsolated = errors.New("node already isolated")

	// ErrInvalidMesh means a mesh description cannot be used.
	ErrInvalidMesh = errors.New("invalid mesh")
)
