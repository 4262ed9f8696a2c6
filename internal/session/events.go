package session

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Event is one entry of the journal: a failure, a recovery, a kill, a
// promotion. DetectMS and RecoverMS are set when measured; Extra holds any
// other JSON the recorder wants kept.
type Event struct {
	Time      time.Time       `json:"time"`
	Kind      string          `json:"kind"`
	Pool      string          `json:"pool,omitempty"`
	Agent     string          `json:"agent,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	DetectMS  *float64        `json:"detect_ms,omitempty"`
	RecoverMS *float64        `json:"recover_ms,omitempty"`
	Extra     json.RawMessage `json:"extra,omitempty"`
}

// maxPendingEvents bounds the events queued in memory; past it
// RecordEvents waits for the disk like any other write.
const maxPendingEvents = 1 << 14

// RecordEvents queues events for the journal and returns without waiting
// for the disk (events go with the next group commit); a zero Time is set
// to now. Only when the disk has fallen far behind does it wait. The
// journal keeps the newest Options.MaxEvents.
func (s *Store) RecordEvents(ctx context.Context, evs ...Event) error {
	if len(evs) == 0 {
		return nil
	}
	type record struct {
		t time.Time
		v []byte
	}
	now := s.now()
	recs := make([]record, len(evs))
	for i, ev := range evs {
		if ev.Time.IsZero() {
			ev.Time = now
		}
		v, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("record event %q: %w", ev.Kind, err)
		}
		recs[i] = record{ev.Time, v}
	}
	fn := func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		for _, r := range recs {
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			if err := b.Put(eventKey(r.t, seq), r.v); err != nil {
				return err
			}
		}
		return s.retainEvents(tx, len(recs))
	}

	n := int64(len(recs))
	if s.pendingEvents.Load()+n > maxPendingEvents {
		if err := s.write(ctx, fn); err != nil {
			return fmt.Errorf("record events: %w", err)
		}
		return nil
	}
	s.pendingEvents.Add(n)
	err := s.writeAsync(fn, func(err error) {
		s.pendingEvents.Add(-n)
		if err != nil {
			s.log.Warn("event journal write failed", "events", n, "err", err)
		}
	})
	if err != nil {
		s.pendingEvents.Add(-n)
		return fmt.Errorf("record events: %w", err)
	}
	return nil
}

// retainEvents counts added events and drops the oldest past maxEvents.
func (s *Store) retainEvents(tx *bolt.Tx, added int) error {
	st := tx.Bucket(bucketState)
	var count uint64
	if v := st.Get(keyEventCount); len(v) == 8 {
		count = binary.BigEndian.Uint64(v)
	}
	count += uint64(added)
	if excess := int(count) - s.maxEvents; excess > 0 {
		b := tx.Bucket(bucketEvents)
		dead := make([][]byte, 0, excess)
		c := b.Cursor()
		for k, _ := c.First(); k != nil && len(dead) < excess; k, _ = c.Next() {
			dead = append(dead, slices.Clone(k))
		}
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		count -= uint64(len(dead))
	}
	return st.Put(keyEventCount, binary.BigEndian.AppendUint64(nil, count))
}

// Events returns the journal's events at or after since (all for the zero
// Time), oldest first; with limit > 0, only the newest limit of them. It
// sees every event recorded before it was called.
func (s *Store) Events(ctx context.Context, since time.Time, limit int) ([]Event, error) {
	if s.pendingEvents.Load() > 0 {
		if err := s.flush(ctx); err != nil {
			return nil, fmt.Errorf("events: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var lo uint64
	if !since.IsZero() {
		lo = unixNanoKey(since)
	}
	var out []Event
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			if len(k) != 16 {
				return fmt.Errorf("event key %x: %w", k, ErrCorrupt)
			}
			if binary.BigEndian.Uint64(k) < lo || (limit > 0 && len(out) == limit) {
				break
			}
			var ev Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("event %x: %w: %w", k, ErrCorrupt, err)
			}
			out = append(out, ev)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}
