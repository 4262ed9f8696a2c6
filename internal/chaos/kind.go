package chaos

import (
	"fmt"
	"slices"
	"strings"
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

// suggest returns the kind closest to s by edit distance, if close enough.
func suggest(s string) string {
	best, bestD := "", 3
	for _, k := range Kinds {
		if d := editDistance(strings.ToLower(s), string(k)); d < bestD {
			best, bestD = string(k), d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
