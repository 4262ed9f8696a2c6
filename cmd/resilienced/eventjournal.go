package main

import (
	"context"
	"time"

	"github.com/resilienced/resilienced/internal/jsonl"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// The event journal (state_dir/events/) keeps the newest
// eventSegments × eventSegmentBytes of events, ~4,000 a segment.
const (
	eventSegmentBytes = 1 << 20
	eventSegments     = 4
)

// eventJournal reads the journal back for the API's history
// (api.EventJournal).
type eventJournal struct {
	log *jsonl.Journal[supervisor.Event]
}

func (j eventJournal) Events(ctx context.Context, since time.Time) ([]supervisor.Event, error) {
	return j.log.Read(ctx, 0, func(ev *supervisor.Event) bool { return !ev.Time.Before(since) })
}
