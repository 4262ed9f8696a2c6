package session

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Get returns the value of key in one of the small key/value buckets that
// other packages keep their state in (the Arbiter's models), or an error
// wrapping ErrNotFound.
func (s *Store) Get(bucket, key string) ([]byte, error) {
	if err := checkKV(bucket, key); err != nil {
		return nil, err
	}
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKV).Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(key)); v != nil {
			out = bytes.Clone(v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", bucket, key, err)
	}
	if out == nil {
		return nil, fmt.Errorf("get %s/%s: %w", bucket, key, ErrNotFound)
	}
	return out, nil
}

// Put stores val under key durably (it shares the group commit); a nil
// val deletes the key.
func (s *Store) Put(bucket, key string, val []byte) error {
	if err := checkKV(bucket, key); err != nil {
		return err
	}
	if val != nil {
		val = bytes.Clone(val)
	}
	err := s.write(context.Background(), func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketKV).CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		if val == nil {
			return b.Delete([]byte(key))
		}
		return b.Put([]byte(key), val)
	})
	if err != nil {
		return fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	return nil
}

func checkKV(bucket, key string) error {
	if err := checkName("bucket", bucket); err != nil {
		return err
	}
	return checkName("key", key)
}
