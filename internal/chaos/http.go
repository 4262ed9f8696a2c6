package chaos

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/resilienced/resilienced/internal/api"
)

// Message is one line of the POST /v1/chaos/run stream: progress while the
// experiment runs, then its report (or an error).
type Message struct {
	Progress *Progress  `json:"progress,omitempty"`
	Report   *Report    `json:"report,omitempty"`
	Error    *api.Error `json:"error,omitempty"`
}

// Register adds the engine's routes to the daemon's API server:
//
//	POST /v1/chaos/run   body: a Spec; answer: JSON lines (Message) until the report
//	POST /v1/chaos/stop  body (optional): StopRequest; ends the running experiment: {"stopped": bool}
//	GET  /v1/chaos       what is running (Status)
func (e *Engine) Register(srv interface {
	Handle(pattern string, h http.HandlerFunc)
}) {
	for pattern, h := range e.Routes() {
		srv.Handle(pattern, h)
	}
}

// Routes returns the engine's routes by pattern (see Register).
func (e *Engine) Routes() map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		"POST /v1/chaos/run":  e.serveRun,
		"POST /v1/chaos/stop": e.serveStop,
		"GET /v1/chaos":       e.serveStatus,
	}
}

func (e *Engine) serveRun(w http.ResponseWriter, r *http.Request) {
	var spec Spec
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		msg := "request body: " + err.Error()
		if errors.Is(err, io.EOF) {
			msg = "request body: empty; want a chaos experiment (JSON)"
		}
		api.WriteError(w, &api.Error{Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: msg})
		return
	}
	var mu sync.Mutex
	started := false
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	send := func(m Message) {
		mu.Lock()
		defer mu.Unlock()
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		enc.Encode(m) // a client that went away cancels r.Context(): the run aborts
		if flusher != nil {
			flusher.Flush()
		}
	}
	// The client going away ends the experiment: its faults are undone.
	rep, err := e.Run(r.Context(), spec, func(p Progress) { send(Message{Progress: &p}) })
	if err != nil {
		mu.Lock()
		st := started
		mu.Unlock()
		if !st {
			api.WriteError(w, httpError(err))
			return
		}
		send(Message{Error: httpError(err)})
		return
	}
	send(Message{Report: rep})
}

func httpError(err error) *api.Error {
	var ae *api.Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, ErrInvalidSpec):
		return &api.Error{Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: err.Error()}
	case errors.Is(err, ErrUnknownTarget):
		return &api.Error{Status: http.StatusNotFound, Code: api.CodeNotFound, Message: err.Error()}
	case errors.Is(err, ErrBusy):
		return &api.Error{Status: http.StatusConflict, Code: "busy", Message: err.Error()}
	case errors.Is(err, ErrClosed):
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: err.Error()}
	}
	return &api.Error{Status: http.StatusInternalServerError, Code: api.CodeInternal, Message: err.Error()}
}

// StopRequest is the optional body of POST /v1/chaos/stop.
type StopRequest struct {
	// Reason is what the report gives as the cause of the abort.
	Reason string `json:"reason,omitempty"`
}

func (e *Engine) serveStop(w http.ResponseWriter, r *http.Request) {
	var req StopRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		api.WriteError(w, &api.Error{Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: "request body: " + err.Error()})
		return
	}
	if req.Reason == "" {
		req.Reason = "stopped by an operator"
	}
	stopped := e.Stop(req.Reason)
	api.WriteJSON(w, http.StatusOK, map[string]bool{"stopped": stopped})
}

func (e *Engine) serveStatus(w http.ResponseWriter, r *http.Request) {
	api.WriteJSON(w, http.StatusOK, e.Status())
}
