package session

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// FuzzRecords: decoding whatever a damaged file holds never panics, and
// what is encoded decodes to itself.
func FuzzRecords(f *testing.F) {
	f.Add([]byte(`{"q":1}`), []byte(`"a"`), "agent-1", "s1", int64(1700000000123456789))
	f.Add([]byte{}, []byte{}, "", "", int64(0))
	f.Fuzz(func(t *testing.T, in, out []byte, agent, session string, ns int64) {
		ex := Exchange{Time: time.Unix(0, ns), Agent: agent, Input: in, Output: out}
		got, err := decodeExchange(7, encodeExchange(&ex))
		if err != nil || got.Seq != 7 || !got.Time.Equal(ex.Time) || got.Agent != agent ||
			!bytes.Equal(got.Input, in) || !bytes.Equal(got.Output, out) {
			t.Fatalf("exchange round trip: %+v, %v", got, err)
		}
		rec := resultRecord{Created: ns, Expires: ns / 2, Session: session, Seq: 9, Result: json.RawMessage(out)}
		r, err := decodeResult(rec.encode())
		if err != nil || r.Created != ns || r.Expires != ns/2 || r.Session != session || r.Seq != 9 || !bytes.Equal(r.Result, out) {
			t.Fatalf("result round trip: %+v, %v", r, err)
		}
		exp, kind, pool, id, err := decodeExpiryKey(expiryKey(ns, expiryResult, agent, session))
		if err != nil || exp != ns || kind != expiryResult || pool != agent || id != session {
			t.Fatalf("expiry key round trip: %d %c %q %q %v", exp, kind, pool, id, err)
		}
		m := sessionMeta{NextSeq: uint64(ns), FirstSeq: 3, PhysFirst: 2, Entries: 4, Bytes: 5, Updated: ns, TTL: 6}
		if got, err := decodeMeta(m.encode()); err != nil || got != m {
			t.Fatalf("meta round trip: %+v, %v", got, err)
		}

		// Arbitrary bytes: errors are fine, panics are not.
		decodeExchange(1, in)
		decodeResult(in)
		decodeExpiryKey(in)
		decodeMeta(in)
	})
}
