package main

import (
	"context"
	"encoding/json"
	"time"

	"github.com/resilienced/resilienced/internal/fault"
	"github.com/resilienced/resilienced/internal/session"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// journalExtra is what a supervisor event carries beyond the journal's own
// fields, kept in the record's Extra so that the journal gives back the
// event the ring had.
type journalExtra struct {
	Code     string               `json:"code,omitempty"`
	Injected bool                 `json:"injected,omitempty"`
	Cause    supervisor.EventKind `json:"cause,omitempty"`
	Class    fault.Class          `json:"class,omitempty"`
	Fault    time.Time            `json:"fault,omitzero"`
	Detect   time.Time            `json:"detect,omitzero"`
}

// journalRecord is ev as the state store keeps it.
func journalRecord(ev supervisor.Event) session.Event {
	rec := session.Event{Time: ev.Time, Kind: string(ev.Kind), Pool: ev.Pool, Agent: ev.Agent, Reason: ev.Reason, DetectMS: ev.DetectMS, RecoverMS: ev.RecoverMS}
	x := journalExtra{Code: ev.Code, Injected: ev.Injected, Cause: ev.Cause, Class: ev.Class, Fault: ev.Fault, Detect: ev.Detect}
	if x != (journalExtra{}) {
		rec.Extra, _ = json.Marshal(x)
	}
	return rec
}

// eventJournal reads the state store's journal back as supervisor events,
// for the API's history (api.EventJournal).
type eventJournal struct{ store *session.Store }

func (j eventJournal) Events(ctx context.Context, since time.Time) ([]supervisor.Event, error) {
	recs, err := j.store.Events(ctx, since, 0)
	if err != nil {
		return nil, err
	}
	out := make([]supervisor.Event, 0, len(recs))
	for _, r := range recs {
		ev := supervisor.Event{Time: r.Time, Kind: supervisor.EventKind(r.Kind), Pool: r.Pool, Agent: r.Agent, Reason: r.Reason, DetectMS: r.DetectMS, RecoverMS: r.RecoverMS}
		var x journalExtra
		if len(r.Extra) > 0 && json.Unmarshal(r.Extra, &x) == nil {
			ev.Code, ev.Injected, ev.Cause, ev.Class, ev.Fault, ev.Detect = x.Code, x.Injected, x.Cause, x.Class, x.Fault, x.Detect
		}
		out = append(out, ev)
	}
	return out, nil
}
