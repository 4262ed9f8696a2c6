package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// RequestDigest identifies a call's request for its idempotency key: its
// session and its input (compacted, so that white space does not make
// two requests differ).
func RequestDigest(session string, input json.RawMessage) []byte {
	h := sha256.New()
	h.Write([]byte(session))
	h.Write([]byte{0})
	var b bytes.Buffer
	if json.Compact(&b, input) == nil {
		h.Write(b.Bytes())
	} else {
		h.Write(input)
	}
	return h.Sum(nil)
}

// conflict reports whether a stored record answers another request than
// digest's. Records from before keys were bound to requests, and callers
// that pass no digest, match anything.
func conflict(rec resultRecord, digest []byte) bool {
	return rec.Digest != nil && digest != nil && !bytes.Equal(rec.Digest, digest)
}

// PutResult stores the result of a sessionless call under its idempotency
// key for Options.ResultTTL, durably, bound to its request's digest
// ([RequestDigest]). If the key already has a result it is kept, and
// PutResult returns an error wrapping ErrDuplicate (the caller should
// answer with Result's instead), or ErrConflict if that result was for
// another request.
func (s *Store) PutResult(ctx context.Context, pool, idemKey string, digest []byte, result json.RawMessage) error {
	if err := checkName("pool", pool); err != nil {
		return err
	}
	if err := checkName("idempotency key", idemKey); err != nil {
		return err
	}
	now := s.now().UnixNano()
	var dup, conflicting bool
	err := s.write(ctx, func(tx *bolt.Tx) error {
		dup = false
		rb, err := tx.Bucket(bucketResults).CreateBucketIfNotExists([]byte(pool))
		if err != nil {
			return err
		}
		xb := tx.Bucket(bucketExpiry)
		rec, ok, err := liveResult(rb, xb, now, pool, idemKey)
		if err != nil || ok {
			dup, conflicting = ok, ok && conflict(rec, digest)
			return err
		}
		return putResult(rb, xb, pool, idemKey, resultRecord{
			Created: now, Expires: expiresAt(now, s.resultTTL), Digest: digest, Result: result,
		})
	})
	if err != nil {
		return fmt.Errorf("put result %s/%q: %w", pool, idemKey, err)
	}
	if conflicting {
		return fmt.Errorf("put result %s/%q: %w", pool, idemKey, ErrConflict)
	}
	if dup {
		return fmt.Errorf("put result %s/%q: %w", pool, idemKey, ErrDuplicate)
	}
	return nil
}

// Result returns the stored result of a completed call, and false if the
// key has none (never stored, or expired). If the result was for another
// request than digest's, it returns an error wrapping ErrConflict; a nil
// digest matches any.
func (s *Store) Result(ctx context.Context, pool, idemKey string, digest []byte) (json.RawMessage, bool, error) {
	if err := checkName("pool", pool); err != nil {
		return nil, false, err
	}
	if err := checkName("idempotency key", idemKey); err != nil {
		return nil, false, err
	}
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	now := s.now().UnixNano()
	var out json.RawMessage
	var found bool
	err := s.view(func(tx *bolt.Tx) error {
		rb := tx.Bucket(bucketResults).Bucket([]byte(pool))
		if rb == nil {
			return nil
		}
		v := rb.Get([]byte(idemKey))
		if v == nil {
			return nil
		}
		rec, err := decodeResult(v)
		if err != nil {
			return err
		}
		if rec.expired(now) {
			return nil
		}
		if conflict(rec, digest) {
			return ErrConflict
		}
		out, found = bytes.Clone(rec.Result), true
		if out == nil {
			out = json.RawMessage{}
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("result %s/%q: %w", pool, idemKey, err)
	}
	return out, found, nil
}

// liveResult finds key's unexpired result. An expired one that Expire has
// not removed yet is dropped here, with its index entry, so that it can be
// replaced.
func liveResult(rb, xb *bolt.Bucket, now int64, pool, key string) (resultRecord, bool, error) {
	v := rb.Get([]byte(key))
	if v == nil {
		return resultRecord{}, false, nil
	}
	rec, err := decodeResult(v)
	if err != nil {
		return resultRecord{}, false, err
	}
	if !rec.expired(now) {
		return rec, true, nil
	}
	if rec.Expires != 0 {
		if err := xb.Delete(expiryKey(rec.Expires, expiryResult, pool, key)); err != nil {
			return resultRecord{}, false, err
		}
	}
	return resultRecord{}, false, rb.Delete([]byte(key))
}

func putResult(rb, xb *bolt.Bucket, pool, key string, rec resultRecord) error {
	if err := rb.Put([]byte(key), rec.encode()); err != nil {
		return err
	}
	if rec.Expires != 0 {
		return xb.Put(expiryKey(rec.Expires, expiryResult, pool, key), []byte{})
	}
	return nil
}

// deleteResult removes a result if it still expires at onlyExpires.
func deleteResult(tx *bolt.Tx, pool, key string, onlyExpires int64) (bool, error) {
	rb := tx.Bucket(bucketResults).Bucket([]byte(pool))
	if rb == nil {
		return false, nil
	}
	v := rb.Get([]byte(key))
	if v == nil {
		return false, nil
	}
	if rec, err := decodeResult(v); err == nil && rec.Expires != onlyExpires {
		return false, nil
	}
	return true, rb.Delete([]byte(key))
}
