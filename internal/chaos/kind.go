package chaos

import (
	"fmt"
	"slices"
	"strings"

	"github.com/resilienced/resilienced/internal/config"
)

// Kind is a kind of fault.
type Kind string

// Fault kinds.
const (
	Kill         Kind = "kill"
	Crash        Kind = "crash"
	Hang         Kind = "hang"
	Latency      Kind = "latency"
	Hallucinate  Kind = "hallucinate"
	Sever        Kind = "sever"
	CorruptToken Kind = "corrupt-token"
	Leak         Kind = "leak"
	OOM          Kind = "oom"
)

// Kinds are all fault kinds, in the order reports list them.
var Kinds = []Kind{Kill, Crash, Hang, Latency, Hallucinate, Sever, CorruptToken, Leak, OOM}

// Describe says in a few words what a fault of kind k does.
func (k Kind) Describe() string {
	switch k {
	case Kill:
		return "SIGKILL to the agent's process"
	case Crash:
		return "SIGSEGV to the agent's process"
	case Hang:
		return "the agent stops answering (cgroup freeze, or SIGSTOP without cgroups)"
	case Latency:
		return "replies delayed by a duration ± jitter in the daemon's message path"
	case Hallucinate:
		return "outputs replaced by schema-violating, invalid-JSON or oversize ones at a rate"
	case Sever:
		return "the agent's network cut at its cgroup, without telling the supervisor"
	case CorruptToken:
		return "bytes flipped in JWT-shaped strings of the input on its way to the agent"
	case Leak:
		return "memory in the agent's cgroup grows steadily until its limit"
	case OOM:
		return "the agent's cgroup driven past its memory limit at once"
	}
	return "unknown"
}

func (k Kind) valid() bool { return slices.Contains(Kinds, k) }

// order is k's position in Kinds.
func (k Kind) order() int { return slices.Index(Kinds, k) }

// ParseKinds parses a comma-separated list of kinds; "all" means every kind.
func ParseKinds(s string) ([]Kind, error) {
	var out []Kind
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if f == "all" {
			for _, k := range Kinds {
				if !slices.Contains(out, k) {
					out = append(out, k)
				}
			}
			continue
		}
		k := Kind(f)
		if err := checkKind(k); err != nil {
			return nil, err
		}
		if slices.Contains(out, k) {
			return nil, fmt.Errorf("%w: fault kind %q given twice", ErrInvalidSpec, f)
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no fault kind (one or more of %s, or all)", ErrInvalidSpec, kindList())
	}
	return out, nil
}

func checkKind(k Kind) error {
	if k.valid() {
		return nil
	}
	hint := ""
	if s := suggest(string(k)); s != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", s)
	}
	return fmt.Errorf("%w: unknown fault kind %q%s; kinds: %s", ErrInvalidSpec, k, hint, kindList())
}

func kindList() string {
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// suggest returns the kind closest to s, if it is close enough to be a typo.
func suggest(s string) string {
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = string(k)
	}
	return config.Suggest(strings.ToLower(s), names)
}
