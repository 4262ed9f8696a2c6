package supervisor

import (
	"sync"
	"time"

	"github.com/resilienced/resilienced/internal/fault"
)

// EventKind says what an [Event] is about.
type EventKind string

// Event kinds.
const (
	EventSpawn      EventKind = "spawn"
	EventReady      EventKind = "ready"
	EventExit       EventKind = "exit"
	EventViolation  EventKind = "violation"
	EventDeadline   EventKind = "deadline"
	EventHang       EventKind = "hang"
	EventOOM        EventKind = "oom"
	EventKill       EventKind = "kill"
	EventPromote    EventKind = "promote"
	EventRecovered  EventKind = "recovered"
	EventDrain      EventKind = "drain"
	EventStop       EventKind = "stop"
	EventSpawnFail  EventKind = "spawn_failed"
	EventEscalate   EventKind = "escalate"
	EventPoolFailed EventKind = "pool_failed"
	EventRestart    EventKind = "restart"
	EventIsolate    EventKind = "isolate"
	EventRelease    EventKind = "release"
	EventBreaker    EventKind = "breaker"
	// EventPrediction: the Arbiter predicted the agent will fail; acted on
	// (a drain follows) unless the reason starts with PredictionHeldOut.
	EventPrediction EventKind = "prediction"
	EventChaos      EventKind = "chaos"
	EventScale      EventKind = "scale"
	EventReload     EventKind = "reload"
	// EventReloadFailed: the daemon refused an invalid config file and
	// kept the running config (reason: the errors). It has no pool.
	EventReloadFailed EventKind = "reload_failed"

	// EventBreach: the Kill Switch saw an agent breach its egress policy.
	EventBreach EventKind = "breach"
	// EventToolError: an MCP tool answered with isError (class caller).
	EventToolError EventKind = "tool_error"
	// EventInvalidInput: an agent refused a call's input (class caller).
	EventInvalidInput EventKind = "invalid_input"
	// EventUnavailable: an agent answered that a dependency of its is
	// unavailable (class dependency); the call goes to another agent.
	EventUnavailable EventKind = "unavailable"
	// EventCancel: a call's caller cancelled it while an agent ran it
	// (class caller); the reason says whether the agent was kept or
	// replaced.
	EventCancel EventKind = "cancel"
)

// PredictionHeldOut starts the reason of a prediction event on an agent
// the Arbiter holds out (leaves alone to measure its precision).
const PredictionHeldOut = "held out (not acted on):"

// Event is one thing that happened, with its timestamps. For a recovered
// event, Fault is the first evidence (or the injection time of a chaos
// fault), Detect when the supervisor acted, and Time when the pool was back
// at full strength.
type Event struct {
	Time     time.Time `json:"time"`
	Kind     EventKind `json:"kind"`
	Pool     string    `json:"pool,omitempty"`
	Agent    string    `json:"agent,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Code     string    `json:"code,omitempty"`     // a violation's code (invalid_json, schema, ...)
	Injected bool      `json:"injected,omitempty"` // the failure followed a fault noted with NoteFault (chaos)
	Cause    EventKind `json:"cause,omitempty"`    // the failure kind a recovered event closes (exit, violation, ...)
	// Action is what a violation did to its agent: kept (agent_state
	// none, below its violation_streak) or replaced.
	Action string `json:"action,omitempty"`
	// Class is a failure's fault class (start, runtime, caller), which
	// decided how the pool accounted for it; empty for other events.
	Class     fault.Class `json:"class,omitempty"`
	Fault     time.Time   `json:"fault,omitzero"`
	Detect    time.Time   `json:"detect,omitzero"`
	DetectMS  *float64    `json:"detect_ms,omitempty"`
	RecoverMS *float64    `json:"recover_ms,omitempty"`
}

func ms(d time.Duration) *float64 {
	v := float64(d) / float64(time.Millisecond)
	return &v
}

// hub fans events out to subscribers and to the sink, and keeps the most
// recent ones in memory. A slow subscriber loses events (counted), it never
// blocks the supervisor.
type hub struct {
	mu     sync.Mutex
	subs   map[chan Event]struct{}
	recent []Event
	next   int
	full   bool
	sink   func(Event)
}

func newHub(size int, sink func(Event)) *hub {
	return &hub{subs: make(map[chan Event]struct{}), recent: make([]Event, size), sink: sink}
}

func (h *hub) emit(ev Event) {
	h.mu.Lock()
	h.recent[h.next] = ev
	h.next = (h.next + 1) % len(h.recent)
	if h.next == 0 {
		h.full = true
	}
	for ch := range h.subs {
		select {
		case ch <- ev:
		default: // the subscriber is behind; the journal still has the event
		}
	}
	sink := h.sink
	h.mu.Unlock()
	if sink != nil {
		sink(ev)
	}
}

func (h *hub) subscribe(buf int) (<-chan Event, func()) {
	ch := make(chan Event, buf)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}
}

// since returns the remembered events at or after t, oldest first.
func (h *hub) since(t time.Time) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Event
	n := h.next
	if !h.full {
		n = 0
	}
	for i := range len(h.recent) {
		ev := h.recent[(n+i)%len(h.recent)]
		if ev.Kind == "" || ev.Time.Before(t) {
			continue
		}
		out = append(out, ev)
	}
	return out
}
