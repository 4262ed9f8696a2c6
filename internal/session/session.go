package session

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Exchange is one validated call of a session: what the agent was given
// and what it answered. Seq numbers a session's exchanges from 1 in the
// order they were appended; trimming removes the lowest, never renumbers.
type Exchange struct {
	Seq    uint64          `json:"seq"`
	Time   time.Time       `json:"time"`
	Agent  string          `json:"agent,omitempty"`
	Input  json.RawMessage `json:"input"`
	Output json.RawMessage `json:"output"`
}

// Limit is a pool's context window and session lifetime. Zero fields are
// unlimited. Bytes counts len(Input)+len(Output) of the exchanges kept; the
// window never exceeds it, so an exchange larger than Bytes on its own is
// acknowledged (and its idempotent result kept) but leaves the context
// empty. TTL is how long a session may stay idle (no Append) before it
// expires.
type Limit struct {
	Entries int
	Bytes   int64
	TTL     time.Duration
}

// SessionInfo describes a live session without its exchanges.
type SessionInfo struct {
	Pool    string    `json:"pool"`
	ID      string    `json:"id"`
	Entries int       `json:"entries"`
	Bytes   int64     `json:"bytes"`
	Updated time.Time `json:"updated"`
}

// expireChunk bounds the records one Expire transaction removes, so that a
// large backlog does not hold up the appends that share the committer.
const expireChunk = 4096

// Context returns the session's exchanges, oldest first: empty (not nil)
// for a new, deleted or expired session. The slices are the caller's.
func (s *Store) Context(ctx context.Context, pool, session string) ([]Exchange, error) {
	if err := checkSession(pool, session); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.now().UnixNano()
	out := []Exchange{}
	err := s.view(func(tx *bolt.Tx) error {
		pb := tx.Bucket(bucketSessions).Bucket([]byte(pool))
		if pb == nil {
			return nil
		}
		mv := pb.Bucket(bucketMeta).Get([]byte(session))
		if mv == nil {
			return nil
		}
		m, err := decodeMeta(mv)
		if err != nil {
			return err
		}
		if m.expired(now) || m.Entries <= 0 {
			return nil
		}
		// Copy the records into one allocation, then decode in place:
		// the exchanges share it instead of allocating two slices each.
		type raw struct {
			seq uint64
			v   []byte
		}
		raws := make([]raw, 0, min(m.Entries, 1<<12))
		total := 0
		prefix := ctxPrefix(session)
		c := pb.Bucket(bucketCtx).Cursor()
		for k, v := c.Seek(ctxKey(session, m.FirstSeq)); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(k) != len(prefix)+8 {
				continue // a longer session id sharing the prefix bytes
			}
			raws = append(raws, raw{binary.BigEndian.Uint64(k[len(prefix):]), v})
			total += len(v)
		}
		arena := make([]byte, 0, total)
		out = make([]Exchange, 0, len(raws))
		for _, r := range raws {
			start := len(arena)
			arena = append(arena, r.v...)
			ex, err := decodeExchange(r.seq, arena[start:len(arena):len(arena)])
			if err != nil {
				return err
			}
			out = append(out, ex)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("context of session %s/%s: %w", pool, session, err)
	}
	return out, nil
}

// Append adds ex to the session, trims the window to lim, and returns once
// it is on disk, with Seq (and Time, if it was zero) set. With an idemKey,
// result is stored under it in the same transaction, so the exchange and
// its result are durable together or not at all; if the key already has a
// result, nothing is written and Append returns the exchange stored with it
// (only Seq is set if it has since been trimmed, none for a sessionless
// result) and an error wrapping ErrDuplicate; or ErrConflict if that
// result was for another request (its session and ex.Input make the
// request's [RequestDigest]).
//
// A session idle past its previous TTL is expired before ex is added,
// whether or not Expire has removed it yet; its Seq keeps counting.
func (s *Store) Append(ctx context.Context, pool, session string, ex Exchange, lim Limit, idemKey string, result json.RawMessage) (Exchange, error) {
	if err := checkSession(pool, session); err != nil {
		return Exchange{}, err
	}
	if idemKey != "" {
		if err := checkName("idempotency key", idemKey); err != nil {
			return Exchange{}, err
		}
	}
	var digest []byte
	if idemKey != "" {
		digest = RequestDigest(session, ex.Input)
	}
	now := s.now()
	if ex.Time.IsZero() {
		ex.Time = now
	}
	var (
		stored Exchange
		dup    bool
	)
	err := s.write(ctx, func(tx *bolt.Tx) error {
		var err error
		stored, dup, err = s.appendTx(tx, now.UnixNano(), pool, session, ex, lim, idemKey, digest, result)
		return err
	})
	if err != nil {
		return Exchange{}, fmt.Errorf("append to session %s/%s: %w", pool, session, err)
	}
	if dup {
		return stored, fmt.Errorf("append to session %s/%s: key %q: %w", pool, session, idemKey, ErrDuplicate)
	}
	return stored, nil
}

func (s *Store) appendTx(tx *bolt.Tx, now int64, pool, session string, ex Exchange, lim Limit, idemKey string, digest []byte, result json.RawMessage) (Exchange, bool, error) {
	xb := tx.Bucket(bucketExpiry)
	var rb *bolt.Bucket
	if idemKey != "" {
		var err error
		if rb, err = tx.Bucket(bucketResults).CreateBucketIfNotExists([]byte(pool)); err != nil {
			return Exchange{}, false, err
		}
		rec, ok, err := liveResult(rb, xb, now, pool, idemKey)
		if err != nil {
			return Exchange{}, false, err
		}
		if ok {
			if conflict(rec, digest) {
				return Exchange{}, false, ErrConflict
			}
			return storedExchange(tx, pool, rec), true, nil
		}
	}

	pb, err := tx.Bucket(bucketSessions).CreateBucketIfNotExists([]byte(pool))
	if err != nil {
		return Exchange{}, false, err
	}
	mb, err := pb.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return Exchange{}, false, err
	}
	cb, err := pb.CreateBucketIfNotExists(bucketCtx)
	if err != nil {
		return Exchange{}, false, err
	}
	skey := []byte(session)
	m := newSessionMeta()
	if mv := mb.Get(skey); mv != nil {
		if m, err = decodeMeta(mv); err != nil {
			return Exchange{}, false, err
		}
		if exp := m.expires(); exp != 0 {
			if err := xb.Delete(expiryKey(exp, expirySession, pool, session)); err != nil {
				return Exchange{}, false, err
			}
		}
		if m.expired(now) {
			if err := deleteExchanges(cb, session, m.PhysFirst, m.NextSeq); err != nil {
				return Exchange{}, false, err
			}
			m.FirstSeq, m.PhysFirst = m.NextSeq, m.NextSeq
			m.Entries, m.Bytes = 0, 0
		}
	}

	ex.Seq = m.NextSeq
	m.NextSeq++
	if err := cb.Put(ctxKey(session, ex.Seq), encodeExchange(&ex)); err != nil {
		return Exchange{}, false, err
	}
	m.Entries++
	m.Bytes += exchangeBytes(&ex)
	if err := trim(cb, session, &m, lim); err != nil {
		return Exchange{}, false, err
	}
	m.Updated = now
	m.TTL = int64(max(lim.TTL, 0))
	if err := mb.Put(skey, m.encode()); err != nil {
		return Exchange{}, false, err
	}
	if exp := m.expires(); exp != 0 {
		if err := xb.Put(expiryKey(exp, expirySession, pool, session), []byte{}); err != nil {
			return Exchange{}, false, err
		}
	}

	if idemKey != "" {
		ttl := lim.TTL
		if ttl <= 0 {
			ttl = s.resultTTL
		}
		rec := resultRecord{Created: now, Expires: expiresAt(now, ttl), Session: session, Seq: ex.Seq, Digest: digest, Result: result}
		if err := putResult(rb, xb, pool, idemKey, rec); err != nil {
			return Exchange{}, false, err
		}
	}
	return ex, false, nil
}

// trimSlack is how many trimmed exchanges a session keeps on disk before
// they are deleted together.
const trimSlack = 16

// trim drops the oldest exchanges from the window until m fits lim, and
// deletes the dropped ones from disk in chunks.
func trim(cb *bolt.Bucket, session string, m *sessionMeta, lim Limit) error {
	for m.Entries > 0 && ((lim.Entries > 0 && m.Entries > int64(lim.Entries)) ||
		(lim.Bytes > 0 && m.Bytes > lim.Bytes)) {
		v := cb.Get(ctxKey(session, m.FirstSeq))
		if v == nil {
			return fmt.Errorf("exchange %d of the window missing: %w", m.FirstSeq, ErrCorrupt)
		}
		old, err := decodeExchange(m.FirstSeq, v)
		if err != nil {
			return err
		}
		m.FirstSeq++
		m.Entries--
		m.Bytes = max(m.Bytes-exchangeBytes(&old), 0)
	}
	if m.FirstSeq-m.PhysFirst >= trimSlack {
		if err := deleteExchanges(cb, session, m.PhysFirst, m.FirstSeq); err != nil {
			return err
		}
		m.PhysFirst = m.FirstSeq
	}
	return nil
}

// deleteExchanges deletes a session's exchanges with from <= seq < to.
func deleteExchanges(cb *bolt.Bucket, session string, from, to uint64) error {
	for seq := from; seq < to; seq++ {
		if err := cb.Delete(ctxKey(session, seq)); err != nil {
			return err
		}
	}
	return nil
}

// storedExchange is the exchange an idempotent result was appended with,
// copied out of the transaction.
func storedExchange(tx *bolt.Tx, pool string, rec resultRecord) Exchange {
	if rec.Session == "" {
		return Exchange{}
	}
	ex := Exchange{Seq: rec.Seq}
	pb := tx.Bucket(bucketSessions).Bucket([]byte(pool))
	if pb == nil {
		return ex
	}
	mv := pb.Bucket(bucketMeta).Get([]byte(rec.Session))
	if mv == nil {
		return ex
	}
	if m, err := decodeMeta(mv); err != nil || rec.Seq < m.FirstSeq {
		return ex
	}
	v := pb.Bucket(bucketCtx).Get(ctxKey(rec.Session, rec.Seq))
	if v == nil {
		return ex
	}
	full, err := decodeExchange(rec.Seq, bytes.Clone(v))
	if err != nil {
		return ex
	}
	return full
}

// Sessions lists the live sessions of pool, or of all pools for "", by
// pool and then id.
func (s *Store) Sessions(ctx context.Context, pool string) ([]SessionInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.now().UnixNano()
	var out []SessionInfo
	err := s.view(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketSessions)
		var pools []string
		if pool != "" {
			pools = []string{pool}
		} else {
			c := sb.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if v == nil {
					pools = append(pools, string(k))
				}
			}
		}
		for _, p := range pools {
			pb := sb.Bucket([]byte(p))
			if pb == nil {
				continue
			}
			mb := pb.Bucket(bucketMeta)
			if mb == nil {
				continue
			}
			err := mb.ForEach(func(k, v []byte) error {
				m, err := decodeMeta(v)
				if err != nil {
					return err
				}
				if m.expired(now) {
					return nil
				}
				out = append(out, SessionInfo{
					Pool: p, ID: string(k),
					Entries: int(m.Entries), Bytes: m.Bytes,
					Updated: time.Unix(0, m.Updated),
				})
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return out, nil
}

// Delete removes a session and its context. Idempotent results appended
// with it stay until they expire, so a retried call still finds its
// result. A missing session is ErrNotFound.
func (s *Store) Delete(ctx context.Context, pool, session string) error {
	if err := checkSession(pool, session); err != nil {
		return err
	}
	var found bool
	err := s.write(ctx, func(tx *bolt.Tx) error {
		var err error
		found, err = deleteSession(tx, pool, session, 0)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete session %s/%s: %w", pool, session, err)
	}
	if !found {
		return fmt.Errorf("delete session %s/%s: %w", pool, session, ErrNotFound)
	}
	return nil
}

// deleteSession removes a session; with onlyExpires != 0 only if it still
// expires then (it has not been appended to since it was indexed).
func deleteSession(tx *bolt.Tx, pool, session string, onlyExpires int64) (bool, error) {
	pb := tx.Bucket(bucketSessions).Bucket([]byte(pool))
	if pb == nil {
		return false, nil
	}
	mb := pb.Bucket(bucketMeta)
	skey := []byte(session)
	mv := mb.Get(skey)
	if mv == nil {
		return false, nil
	}
	// A corrupt meta is deleted too, with its exchanges found by prefix.
	if m, err := decodeMeta(mv); err == nil {
		if onlyExpires != 0 && m.expires() != onlyExpires {
			return false, nil
		}
		if exp := m.expires(); exp != 0 {
			if err := tx.Bucket(bucketExpiry).Delete(expiryKey(exp, expirySession, pool, session)); err != nil {
				return false, err
			}
		}
	}
	var dead [][]byte
	prefix := ctxPrefix(session)
	cb := pb.Bucket(bucketCtx)
	c := cb.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		dead = append(dead, bytes.Clone(k))
	}
	for _, k := range dead {
		if err := cb.Delete(k); err != nil {
			return false, err
		}
	}
	return true, mb.Delete(skey)
}

// Expire removes the sessions idle past their TTL and the idempotent
// results past theirs, and returns how many of both it removed. Expired
// records are already invisible to reads; Expire reclaims their space. It
// reads only what is due (an index sorted by expiry) and works in chunks
// that share the committer with appends; call it periodically.
func (s *Store) Expire(ctx context.Context) (int, error) {
	total := 0
	for {
		var n int
		var more bool
		err := s.write(ctx, func(tx *bolt.Tx) error {
			var err error
			n, more, err = expireTx(tx, s.now().UnixNano())
			return err
		})
		if err != nil {
			return total, fmt.Errorf("expire: %w", err)
		}
		total += n
		if !more {
			break
		}
	}
	if total > 0 {
		s.log.Debug("session store expired records", "records", total)
	}
	return total, nil
}

func expireTx(tx *bolt.Tx, now int64) (removed int, more bool, err error) {
	xb := tx.Bucket(bucketExpiry)
	var due [][]byte
	c := xb.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) >= 8 && int64(binary.BigEndian.Uint64(k)) > now {
			break
		}
		if len(due) == expireChunk {
			more = true
			break
		}
		due = append(due, bytes.Clone(k))
	}
	for _, k := range due {
		if err := xb.Delete(k); err != nil {
			return removed, false, err
		}
		exp, kind, pool, id, err := decodeExpiryKey(k)
		if err != nil {
			continue // a corrupt index entry: dropping it is all we can do
		}
		var ok bool
		switch kind {
		case expirySession:
			ok, err = deleteSession(tx, pool, id, exp)
		case expiryResult:
			ok, err = deleteResult(tx, pool, id, exp)
		}
		if err != nil {
			return removed, false, err
		}
		if ok {
			removed++
		}
	}
	return removed, more, nil
}

func expiresAt(now int64, ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	return now + int64(ttl)
}

func checkSession(pool, session string) error {
	if err := checkName("pool", pool); err != nil {
		return err
	}
	return checkName("session", session)
}
