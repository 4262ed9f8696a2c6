package api

import (
	"encoding/json"
	"slices"
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
	PID     int                      `json:"pid"` // the daemon's: an upgrade changes it
	Mode    Mode                     `json:"mode"`
	Config  *ConfigStatus            `json:"config,omitempty"`
	Pools   []supervisor.PoolStatus  `json:"pools"`
	Agents  []supervisor.AgentStatus `json:"agents"`
}

// ConfigStatus is the running config: its generation (1 at start, one
// more at each applied reload), when it was loaded, and the last reload's
// error, if the last reload failed.
type ConfigStatus struct {
	Path            string    `json:"path,omitempty"`
	Generation      int       `json:"generation"`
	LoadedAt        time.Time `json:"loaded_at"`
	LastReloadError string    `json:"last_reload_error,omitempty"`
}

// UpgradeResult is the answer to POST /v1/upgrade: the instance that hands
// over (it exits once the new one serves) and the binary it starts.
type UpgradeResult struct {
	PID        int    `json:"pid"`
	Executable string `json:"executable"`
}

// ReloadResult is the answer to POST /v1/reload: the config applied, and
// what changed in it.
type ReloadResult struct {
	ConfigStatus
	Added   []string `json:"added"`   // pools
	Removed []string `json:"removed"` // pools
	Changed []string `json:"changed"` // pools whose config changed
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

// StreamCall is one line of a call stream's body (POST
// /v1/pools/{pool}/call/stream): a call and the caller's id for it, a JSON
// string or number, which its answer carries back.
type StreamCall struct {
	ID json.RawMessage `json:"id"`
	CallRequest
}

// StreamAnswer is one line of a call stream's answer: the CallResponse of
// a call that succeeded, or the Error of one that failed or of a line that
// is not a call. Answers come as calls complete, in any order.
type StreamAnswer struct {
	// ID is the call's id; absent when the line's id could not be read.
	ID json.RawMessage `json:"id,omitempty"`
	*CallResponse
	// Status is the HTTP status the single call would have answered with
	// this error (the Error's own Status is not in its JSON).
	Status int    `json:"status,omitempty"`
	Line   int    `json:"line,omitempty"` // of the request body, with an error
	Error  *Error `json:"error,omitempty"`
}

// Err returns the answer's error as an *Error, or nil.
func (a *StreamAnswer) Err() error {
	if a.Error == nil {
		return nil
	}
	return a.Error
}

// ScaleRequest is the body of POST /v1/pools/{pool}/scale.
type ScaleRequest struct {
	Replicas int `json:"replicas"`
	// Force goes over the pool's bound (max_replicas or the node's).
	Force bool `json:"force,omitempty"`
	// AllowZero allows 0 replicas.
	AllowZero bool `json:"allow_zero,omitempty"`
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

// LogLine is one line of an agent's stderr.
type LogLine = supervisor.LogLine

// EventFilter selects events (GET /v1/events?pool=&agent=&kind=): an
// empty field matches every event.
type EventFilter struct {
	Pool  string
	Agent string
	Kinds []string // any of them
}

// Matches reports whether ev is one f selects.
func (f EventFilter) Matches(ev Event) bool {
	return (f.Pool == "" || ev.Pool == f.Pool) &&
		(f.Agent == "" || ev.Agent == f.Agent) &&
		(len(f.Kinds) == 0 || slices.Contains(f.Kinds, string(ev.Kind)))
}

// EventQuery is what [Client.Events] asks for.
type EventQuery struct {
	EventFilter
	Since  time.Duration // only events of the last Since (0: all remembered)
	Tail   int           // only the last Tail of those (0: all)
	Follow bool          // then stream new ones
}

// AgentStatus is one agent as `agents` lists it.
type AgentStatus = supervisor.AgentStatus
