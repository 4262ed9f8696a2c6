package session

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Records are a small hand-rolled binary format rather than JSON: the
// context is decoded on every call and an exchange's input and output are
// stored verbatim, without re-escaping. Every record starts with a version
// byte so the format can change without a migration of old files.
const recordV1 = 1

// resultV2 is a result record with the digest of its request.
const resultV2 = 2

// File layout (bucket names):
//
//	state                 schema version, event count
//	sessions/<pool>/meta  session id → sessionMeta
//	sessions/<pool>/ctx   ctxKey(session, seq) → exchange
//	results/<pool>        idempotency key → resultRecord
//	expiry                expiry key (see expiryKey) → empty
//	events                time ns (8 BE) + seq (8 BE) → Event as JSON
//	kv/<bucket>           key → value
var (
	bucketState     = []byte("state")
	bucketSessions  = []byte("sessions")
	bucketResults   = []byte("results")
	bucketExpiry    = []byte("expiry")
	oldBucketEvents = []byte("events") // before the event journal moved out
	bucketKV        = []byte("kv")

	bucketMeta = []byte("meta")
	bucketCtx  = []byte("ctx")

	keyVersion       = []byte("version")
	oldKeyEventCount = []byte("events.count")
)

// schemaVersion is the layout above; a file with another one is refused.
const schemaVersion = 1

// sessionMeta is kept beside a session's exchanges so that appending,
// trimming, listing and expiring never need to read the exchanges.
//
// The window is [FirstSeq, NextSeq). Trimming only advances FirstSeq; the
// records below it are deleted in chunks once trimSlack of them have piled
// up (from PhysFirst), because deleting the oldest record on every append
// would rewrite one more page per append, and pages written are what a
// commit's fsync pays for.
type sessionMeta struct {
	NextSeq   uint64
	FirstSeq  uint64
	PhysFirst uint64
	Entries   int64 // in the window
	Bytes     int64 // in the window
	Updated   int64 // unix ns of the last append
	TTL       int64 // ns; 0 = never expires
}

const metaLen = 1 + 7*8

func newSessionMeta() sessionMeta {
	return sessionMeta{NextSeq: 1, FirstSeq: 1, PhysFirst: 1}
}

func (m sessionMeta) expires() int64 {
	if m.TTL <= 0 {
		return 0
	}
	return m.Updated + m.TTL
}

func (m sessionMeta) expired(now int64) bool {
	e := m.expires()
	return e != 0 && now >= e
}

func (m sessionMeta) encode() []byte {
	b := make([]byte, 0, metaLen)
	b = append(b, recordV1)
	b = binary.BigEndian.AppendUint64(b, m.NextSeq)
	b = binary.BigEndian.AppendUint64(b, m.FirstSeq)
	b = binary.BigEndian.AppendUint64(b, m.PhysFirst)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Entries))
	b = binary.BigEndian.AppendUint64(b, uint64(m.Bytes))
	b = binary.BigEndian.AppendUint64(b, uint64(m.Updated))
	b = binary.BigEndian.AppendUint64(b, uint64(m.TTL))
	return b
}

func decodeMeta(b []byte) (sessionMeta, error) {
	if len(b) != metaLen || b[0] != recordV1 {
		return sessionMeta{}, fmt.Errorf("session meta of %d bytes: %w", len(b), ErrCorrupt)
	}
	be := binary.BigEndian
	return sessionMeta{
		NextSeq:   be.Uint64(b[1:]),
		FirstSeq:  be.Uint64(b[9:]),
		PhysFirst: be.Uint64(b[17:]),
		Entries:   int64(be.Uint64(b[25:])),
		Bytes:     int64(be.Uint64(b[33:])),
		Updated:   int64(be.Uint64(b[41:])),
		TTL:       int64(be.Uint64(b[49:])),
	}, nil
}

// All sessions of a pool share one bucket of exchanges, keyed by session
// and then seq, so that each session's exchanges are contiguous. (A bucket
// per session costs its root page on top of its leaf in every commit.)
// ctxPrefix is uvarint(len(session)) + session; ctxKey appends seq (8 BE).
func ctxPrefix(session string) []byte {
	b := make([]byte, 0, binary.MaxVarintLen64+len(session)+8)
	return appendBytes(b, []byte(session))
}

func ctxKey(session string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(ctxPrefix(session), seq)
}

// exchangeBytes is what an exchange counts against Limit.Bytes: the bytes
// that travel to the agent in the context.
func exchangeBytes(ex *Exchange) int64 {
	return int64(len(ex.Input) + len(ex.Output))
}

// encodeExchange: version, time ns (8), then agent, input and output, each
// uvarint length-prefixed. Seq is the key.
func encodeExchange(ex *Exchange) []byte {
	n := 1 + 8 + 3*binary.MaxVarintLen64 + len(ex.Agent) + len(ex.Input) + len(ex.Output)
	b := make([]byte, 0, n)
	b = append(b, recordV1)
	b = binary.BigEndian.AppendUint64(b, uint64(ex.Time.UnixNano()))
	b = appendBytes(b, []byte(ex.Agent))
	b = appendBytes(b, ex.Input)
	b = appendBytes(b, ex.Output)
	return b
}

// decodeExchange decodes into slices of b: copy b first if it is bbolt's
// memory and the exchange outlives the transaction.
func decodeExchange(seq uint64, b []byte) (Exchange, error) {
	if len(b) < 9 || b[0] != recordV1 {
		return Exchange{}, fmt.Errorf("exchange %d: %w", seq, ErrCorrupt)
	}
	ex := Exchange{Seq: seq, Time: time.Unix(0, int64(binary.BigEndian.Uint64(b[1:])))}
	rest := b[9:]
	var agent []byte
	var ok bool
	if agent, rest, ok = cutBytes(rest); !ok {
		return Exchange{}, fmt.Errorf("exchange %d agent: %w", seq, ErrCorrupt)
	}
	if ex.Input, rest, ok = cutBytes(rest); !ok {
		return Exchange{}, fmt.Errorf("exchange %d input: %w", seq, ErrCorrupt)
	}
	if ex.Output, rest, ok = cutBytes(rest); !ok || len(rest) != 0 {
		return Exchange{}, fmt.Errorf("exchange %d output: %w", seq, ErrCorrupt)
	}
	ex.Agent = string(agent)
	return ex, nil
}

// resultRecord is an idempotent call's result. Session and Seq name the
// exchange appended with it (empty and 0 for a sessionless call).
type resultRecord struct {
	Created int64
	Expires int64 // unix ns; 0 = never
	Session string
	Seq     uint64
	// Digest is [RequestDigest] of the request that produced Result; nil
	// in records written before keys were bound to their request.
	Digest []byte
	Result []byte
}

func (r resultRecord) expired(now int64) bool {
	return r.Expires != 0 && now >= r.Expires
}

func (r resultRecord) encode() []byte {
	b := make([]byte, 0, 1+8+8+binary.MaxVarintLen64+len(r.Session)+8+1+len(r.Digest)+len(r.Result))
	b = append(b, resultV2)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Created))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Expires))
	b = appendBytes(b, []byte(r.Session))
	b = binary.BigEndian.AppendUint64(b, r.Seq)
	b = appendBytes(b, r.Digest)
	return append(b, r.Result...)
}

// decodeResult decodes into slices of b, like decodeExchange.
func decodeResult(b []byte) (resultRecord, error) {
	if len(b) < 17 || (b[0] != recordV1 && b[0] != resultV2) {
		return resultRecord{}, fmt.Errorf("result record: %w", ErrCorrupt)
	}
	r := resultRecord{
		Created: int64(binary.BigEndian.Uint64(b[1:])),
		Expires: int64(binary.BigEndian.Uint64(b[9:])),
	}
	sess, rest, ok := cutBytes(b[17:])
	if !ok || len(rest) < 8 {
		return resultRecord{}, fmt.Errorf("result record: %w", ErrCorrupt)
	}
	r.Session = string(sess)
	r.Seq = binary.BigEndian.Uint64(rest)
	rest = rest[8:]
	if b[0] == resultV2 {
		if r.Digest, rest, ok = cutBytes(rest); !ok {
			return resultRecord{}, fmt.Errorf("result record digest: %w", ErrCorrupt)
		}
		if len(r.Digest) == 0 {
			r.Digest = nil
		}
	}
	r.Result = rest
	return r, nil
}

// Expiry index keys sort by expiry time, so Expire reads only what is due:
// expires ns (8 BE), kind, uvarint len(pool), pool, id.
const (
	expirySession = 's'
	expiryResult  = 'r'
)

func expiryKey(expires int64, kind byte, pool, id string) []byte {
	b := make([]byte, 0, 8+1+binary.MaxVarintLen64+len(pool)+len(id))
	b = binary.BigEndian.AppendUint64(b, uint64(expires))
	b = append(b, kind)
	b = appendBytes(b, []byte(pool))
	return append(b, id...)
}

func decodeExpiryKey(k []byte) (expires int64, kind byte, pool, id string, err error) {
	if len(k) < 10 {
		return 0, 0, "", "", fmt.Errorf("expiry key: %w", ErrCorrupt)
	}
	p, rest, ok := cutBytes(k[9:])
	if !ok {
		return 0, 0, "", "", fmt.Errorf("expiry key: %w", ErrCorrupt)
	}
	return int64(binary.BigEndian.Uint64(k)), k[8], string(p), string(rest), nil
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func cutBytes(b []byte) (v, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, false
	}
	end := w + int(n)
	return b[w:end:end], b[end:], true
}
