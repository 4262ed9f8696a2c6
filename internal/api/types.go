package api

import (
	"encoding/json"
	"time"

	"github.com/resilienced/resilienced/internal/contract"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// Mode says which kernel features the daemon uses.
type Mode struct {
	Cgroup string   `json:"cgroup"` // v2 | hybrid | none
	EBPF   bool     `json:"ebpf"`
	Notes  []string `json:"notes"`
}

// Status is the answer to GET /v1/status.
type Status struct {
	Node    string                   `json:"node"`
	Version string                   `json:"version"`
	Mode    Mode                     `json:"mode"`
	Pools   []supervisor.PoolStatus  `json:"pools"`
	Agents  []supervisor.AgentStatus `json:"agents"`
}

// VersionInfo is the answer to GET /v1/version.
type VersionInfo struct {
	Version string `json:"version"`
	Go      string `json:"go"`
}

// CallRequest is the body of POST /v1/pools/{pool}/call.
type CallRequest struct {
	Input   json.RawMessage `json:"input"`
	Session string          `json:"session,omitempty"`
	Key     string          `json:"key,omitempty"`     // idempotency key
	Timeout string          `json:"timeout,omitempty"` // Go duration; default 60s
}

// CallResponse is a validated result.
type CallResponse struct {
	Output     json.RawMessage       `json:"output"`
	Agent      string                `json:"agent,omitempty"`
	Attempts   int                   `json:"attempts"`
	Cached     bool                  `json:"cached,omitempty"`
	Seq        uint64                `json:"seq,omitempty"`
	Violations []*contract.Violation `json:"violations,omitempty"`
}

// ScaleRequest is the body of POST /v1/pools/{pool}/scale.
type ScaleRequest struct {
	Replicas int `json:"replicas"`
}

// RingMember is one member of a pool's ring.
type RingMember struct {
	Agent string  `json:"agent"`
	State string  `json:"state"`
	Keys  int     `json:"keys"`
	Share float64 `json:"share"`
}

// RingInfo is the answer to GET /v1/pools/{pool}/ring.
type RingInfo struct {
	Pool      string       `json:"pool"`
	Members   []RingMember `json:"members"`
	Keys      int          `json:"keys"`
	Imbalance float64      `json:"imbalance"`
}

// SessionInfo describes one session.
type SessionInfo struct {
	Pool    string    `json:"pool"`
	ID      string    `json:"id"`
	Entries int       `json:"entries"`
	Bytes   int64     `json:"bytes"`
	Updated time.Time `json:"updated"`
}

// Exchange is one validated exchange of a session.
type Exchange struct {
	Seq    uint64          `json:"seq"`
	Time   time.Time       `json:"time"`
	Agent  string          `json:"agent,omitempty"`
	Input  json.RawMessage `json:"input"`
	Output json.RawMessage `json:"output"`
}

// SessionDetail is the answer to GET /v1/sessions/{id}.
type SessionDetail struct {
	Pool    string     `json:"pool"`
	ID      string     `json:"id"`
	Context []Exchange `json:"context"`
}

// Event is one event as the API streams it.
type Event = supervisor.Event

// AgentStatus is one agent as `agents` lists it.
type AgentStatus = supervisor.AgentStatus
