package supervisor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// Fault is a misbehaviour injected into the daemon's message path to one
// agent, for chaos experiments: the agent itself knows nothing of it.
type Fault struct {
	Latency, Jitter time.Duration // added to each reply
	Hallucinate     float64       // rate of outputs replaced by a violating one
	HallucinateKind string        // "schema" | "invalid_json" | "oversize" | "" (mixed)
	CorruptTokens   bool          // flip bytes in JWT-shaped strings of the input
	Seed            uint64
}

// injected is a Fault with its random source.
type injected struct {
	Fault
	mu  sync.Mutex
	rng *rand.Rand
}

func (in *injected) float() float64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.rng.Float64()
}

func (in *injected) intN(n int) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.rng.IntN(n)
}

// InjectFault makes the daemon misbehave towards one agent as f says,
// replacing any previous fault on it.
func (s *Supervisor) InjectFault(agentID string, f Fault) error {
	_, sl, err := s.findAgent(agentID)
	if err != nil {
		return err
	}
	if f.Hallucinate < 0 || f.Hallucinate > 1 {
		return fmt.Errorf("hallucinate rate %v is not in [0,1]", f.Hallucinate)
	}
	switch f.HallucinateKind {
	case "", "schema", "invalid_json", "oversize":
	default:
		return fmt.Errorf("hallucinate kind %q is not one of schema, invalid_json, oversize", f.HallucinateKind)
	}
	sl.inject.Store(&injected{Fault: f, rng: rand.New(rand.NewPCG(f.Seed, f.Seed^0x9e3779b97f4a7c15))})
	return nil
}

// ClearFault removes an injected fault.
func (s *Supervisor) ClearFault(agentID string) error {
	_, sl, err := s.findAgent(agentID)
	if err != nil {
		return err
	}
	sl.inject.Store(nil)
	sl.fault.Store(0) // a fault that had no effect must not date the next failure
	return nil
}

// AgentSandbox returns a live agent's sandbox (nil without cgroups) and pid.
func (s *Supervisor) AgentSandbox(agentID string) (Sandbox, int, error) {
	p, sl, err := s.findAgent(agentID)
	if err != nil {
		return nil, 0, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if sl.a == nil {
		return nil, 0, fmt.Errorf("%w %q: still starting", ErrUnknownAgent, agentID)
	}
	return sl.sb, sl.a.PID(), nil
}

// hallucination returns a violating output of the given kind.
func (in *injected) hallucination(maxBytes int64) json.RawMessage {
	kind := in.HallucinateKind
	if kind == "" {
		kind = []string{"schema", "invalid_json", "oversize"}[in.intN(3)]
	}
	switch kind {
	case "invalid_json":
		return json.RawMessage(`{"answer": "the model stopped mid-sentence`)
	case "oversize":
		n := maxBytes + 1024
		if n > 8<<20 {
			n = 8 << 20
		}
		return json.RawMessage(`{"answer":"` + strings.Repeat("x", int(n)) + `"}`)
	default:
		return json.RawMessage(`{"answer": 42, "hallucinated": true}`)
	}
}

// corruptTokens flips one byte in the signature of every JWT-shaped string
// (three base64url segments joined by dots, the first starting "eyJ") in
// the JSON text b.
func (in *injected) corruptTokens(b []byte) []byte {
	out := bytes.Clone(b)
	for i := 0; i+3 < len(out); i++ {
		if out[i] != 'e' || out[i+1] != 'y' || out[i+2] != 'J' {
			continue
		}
		j, dots := i, 0
		for j < len(out) && (isB64URL(out[j]) || out[j] == '.') {
			if out[j] == '.' {
				dots++
			}
			j++
		}
		if dots == 2 && j-i > 10 {
			k := j - 1 - in.intN(4) // inside the signature segment
			if out[k] == 'A' {
				out[k] = 'B'
			} else {
				out[k] = 'A'
			}
		}
		i = j
	}
	return out
}

func isB64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
