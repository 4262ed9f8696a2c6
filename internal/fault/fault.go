package fault

// Class is the class of an agent fault. The zero value is no class: an
// event that is not a failure.
type Class string

// Fault classes; see the package documentation.
const (
	Start   Class = "start"
	Runtime Class = "runtime"
	Caller  Class = "caller"
	// Dependency: see the package documentation.
	Dependency Class = "dependency"
)

// Charged reports whether faults of the class grow the pool's restart
// backoff and count toward its restart intensity.
func (c Class) Charged() bool { return c == Start }

// Replaces reports whether a fault of the class kills the agent and
// starts another.
func (c Class) Replaces() bool { return c == Start || c == Runtime }

func (c Class) String() string { return string(c) }
