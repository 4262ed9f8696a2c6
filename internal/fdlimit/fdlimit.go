package fdlimit

import (
	"errors"
	"fmt"
)

// PerAgent is the most descriptors one running agent holds open in the
// daemon (see the package documentation); TestAgentsHoldFewDescriptors in
// internal/supervisor checks it.
const PerAgent = 5

// Reserve is what the daemon keeps for itself besides its agents: the API
// socket and its connections, the state database, journals, eBPF objects,
// and the descriptors an agent's start holds for a moment (its six pipe
// ends, its cgroup directory) for each start in flight.
const Reserve = 512

// ErrTooManyAgents: the configuration wants more agents than the
// open-file limit allows.
var ErrTooManyAgents = errors.New("more agents than the open-file limit allows")

// Capacity is how many agents fit in limit descriptors with inUse open
// already (besides the Reserve).
func Capacity(limit uint64, inUse int) int {
	free := int64(limit) - int64(inUse) - Reserve
	if free <= 0 {
		return 0
	}
	return int(free / PerAgent)
}

// Check returns an error wrapping ErrTooManyAgents, with the numbers and
// what to do, when want agents do not fit.
func Check(want int, limit uint64, inUse int) error {
	if fit := Capacity(limit, inUse); want > fit {
		return fmt.Errorf("%w: the pools want %d agents (replicas + spares), and the open-file limit (RLIMIT_NOFILE %d, %d open now) allows %d at %d descriptors each: raise it (LimitNOFILE= in the unit, ulimit -n) or lower replicas", ErrTooManyAgents, want, limit, inUse, fit, PerAgent)
	}
	return nil
}
