package agent

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
)

// ProgressReport is one progress notification of a call in flight
// (MCP's notifications/progress). The agent sends it under the call's
// progress token, which is the request's id: MCP calls carry it in
// _meta.progressToken; a native agent may send the same notification with
// its request's id as the token.
type ProgressReport struct {
	Progress float64
	Total    float64 // 0 when unknown
	Message  string
}

// routeProgress hands a progress notification to the call in flight
// whose token it carries. Progress on a call after [Pending.Cancel] is
// not forwarded: it is the agent saying it goes on with a call it was
// told to stop, and closes [Pending.Running].
func (a *Agent) routeProgress(params json.RawMessage) {
	pc := a.current.Load()
	if pc == nil {
		return
	}
	var p struct {
		Token    json.RawMessage `json:"progressToken"`
		Progress float64         `json:"progress"`
		Total    float64         `json:"total"`
		Message  string          `json:"message"`
	}
	if json.Unmarshal(params, &p) != nil || !tokenIs(p.Token, pc.id) {
		return
	}
	a.reports.Add(1)
	if pc.cancelled.Load() {
		pc.runningOnce.Do(func() { close(pc.running) })
		return
	}
	if pc.onProgress != nil {
		pc.onProgress(ProgressReport{Progress: p.Progress, Total: p.Total, Message: p.Message})
	}
}

// tokenIs reports whether a progress token (a number or a string, as MCP
// allows) is id.
func tokenIs(tok json.RawMessage, id uint64) bool {
	tok = bytes.Trim(tok, `"`)
	got, err := strconv.ParseUint(string(tok), 10, 64)
	return err == nil && got == id
}

// Cancel tells the agent to stop the call, as MCP's notifications/cancelled
// with the request's id, and reports whether it could: a native agent has
// no such message and false is returned. The request stays in flight: the
// caller goes on waiting for a while (an agent may still answer, an error
// or the result it had), then closes it; a reply that comes after Close is
// dropped. Progress the agent reports on the call from now on closes
// [Pending.Running] instead of reaching the call's onProgress.
func (pc *Pending) Cancel(reason string) bool {
	a := pc.a
	if a.cfg.Protocol != ProtocolMCP {
		return false
	}
	pc.cancelled.Store(true)
	buf := append(make([]byte, 0, 96+len(reason)), `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":`...)
	buf = strconv.AppendUint(buf, pc.id, 10)
	buf = append(buf, `,"reason":`...)
	buf = appendJSONString(buf, reason)
	buf = append(buf, "}}\n"...)
	if err := a.write(buf); err != nil {
		a.log.Debug("cancelling a call", "id", pc.id, "err", err)
	}
	return true
}

// Running is closed when the agent reports progress on the call after
// [Pending.Cancel]: it goes on with a call it was told to stop. It is
// nil (never closed) for a native call sent without a progress callback.
func (pc *Pending) Running() <-chan struct{} { return pc.running }

// maxStale bounds the requests remembered as given up on: an agent that
// leaves more than that unanswered is out of step for good, and a late
// reply beyond it fails the next call as unsolicited, as it would without
// the list.
const maxStale = 64

// staleIDs are the ids of requests closed without their reply.
type staleIDs struct {
	n   atomic.Int32 // len(ids), read without the lock on every reply
	mu  sync.Mutex
	ids []uint64
}

func (s *staleIDs) add(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ids) < maxStale {
		s.ids = append(s.ids, id)
		s.n.Store(int32(len(s.ids)))
	}
}

// drop reports whether line is the reply to a stale request, and forgets
// that request: each is answered once.
func (s *staleIDs) drop(line []byte) bool {
	if s.n.Load() == 0 {
		return false
	}
	var m struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(line, &m) != nil {
		return false
	}
	id, err := strconv.ParseUint(string(m.ID), 10, 64)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, v := range s.ids {
		if v == id {
			s.ids = append(s.ids[:i], s.ids[i+1:]...)
			s.n.Store(int32(len(s.ids)))
			return true
		}
	}
	return false
}
