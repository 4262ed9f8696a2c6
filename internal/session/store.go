package session

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Options configures a Store. Only Path is required.
type Options struct {
	// Path of the bbolt file, e.g. /var/lib/resilienced/state.db. Its
	// directory is created (0700) if missing.
	Path string

	// Now is the clock for exchange and event times and for expiry;
	// time.Now when nil.
	Now func() time.Time

	// MaxBatchDelay is the longest the committer waits, once a write is
	// pending, for as many writes as its previous commit had, so that they
	// share one fsync; a lone writer never waits. 1ms when 0; negative
	// disables the wait (writes then share a commit only when they queued
	// up while the previous one was being fsync'd).
	MaxBatchDelay time.Duration

	// MaxBatchSize caps the writes applied in one transaction; 1024 when 0.
	MaxBatchSize int

	// NoSync skips fsync. Tests only: an OS crash or power loss then loses
	// acknowledged data (kill -9 of the daemon does not).
	NoSync bool

	// Logger receives commit failures and expiry counts; slog.Default()
	// when nil.
	Logger *slog.Logger

	// LockTimeout is how long Open waits for another process to release
	// the file (a previous daemon still exiting); 2s when 0, and never
	// longer than ctx allows.
	LockTimeout time.Duration

	// ResultTTL is how long a sessionless call's result (PutResult) is
	// kept, and a session call's result when its Limit has no TTL; 24h
	// when 0, never when negative.
	ResultTTL time.Duration

	// commitMode selects the write path; the benchmarks compare them.
	commitMode commitMode
}

type commitMode int

const (
	commitGroup     commitMode = iota // the committer goroutine (default)
	commitSolo                        // one transaction and fsync per write (baseline)
	commitBoltBatch                   // bbolt's DB.Batch (evaluated, not used)
)

const (
	defaultMaxBatchSize  = 1024
	defaultMaxBatchDelay = time.Millisecond
	defaultLockTimeout   = 2 * time.Second
	defaultResultTTL     = 24 * time.Hour

	// maxNameLen bounds pool, session, key and bucket names.
	maxNameLen = 1024
)

// Store is an open state file. It is safe for concurrent use.
type Store struct {
	db        *bolt.DB
	path      string
	now       func() time.Time
	log       *slog.Logger
	resultTTL time.Duration
	maxEvents int
	mode      commitMode

	c committer

	closeOnce sync.Once
	closeErr  error
}

// Open opens or creates the state file. If another process holds it, Open
// waits up to LockTimeout and then fails with an error wrapping ErrLocked.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Path == "" {
		return nil, fmt.Errorf("open session store: empty path: %w", ErrInvalid)
	}
	s := &Store{
		path:      opts.Path,
		now:       opts.Now,
		log:       opts.Logger,
		resultTTL: opts.ResultTTL,
		mode:      opts.commitMode,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.resultTTL == 0 {
		s.resultTTL = defaultResultTTL
	}

	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = defaultLockTimeout
	}
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open session store %s: %w", opts.Path, err)
	}
	// bbolt treats a zero timeout as "wait forever".
	timeout = max(timeout, time.Millisecond)

	dir := filepath.Dir(opts.Path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open session store: %w", err)
	}
	_, statErr := os.Stat(opts.Path)
	created := errors.Is(statErr, os.ErrNotExist)

	db, err := bolt.Open(opts.Path, 0o600, &bolt.Options{
		Timeout: timeout,
		// As etcd does: the free list is rebuilt by a scan at open instead
		// of being written by every commit, and kept as a map, which stays
		// fast as trimming fragments the file.
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
		InitialMmapSize: 64 << 20,
		NoStatistics:    true,
		NoSync:          opts.NoSync,
	})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("state file %s is %w (is resilienced already running?)", opts.Path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open session store %s: %w", opts.Path, err)
	}
	if created && !opts.NoSync {
		// A new file's directory entry is durable only once its
		// directory is synced.
		if err := syncDir(dir); err != nil {
			db.Close()
			return nil, fmt.Errorf("open session store: %w", err)
		}
	}
	db.MaxBatchSize = opts.MaxBatchSize
	if db.MaxBatchSize <= 0 {
		db.MaxBatchSize = defaultMaxBatchSize
	}
	delay := opts.MaxBatchDelay
	if delay == 0 {
		delay = defaultMaxBatchDelay
	}
	delay = max(delay, 0)
	db.MaxBatchDelay = max(delay, time.Microsecond)
	s.db = db

	if err := s.initBuckets(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open session store %s: %w", opts.Path, err)
	}
	s.c.start(s, db.MaxBatchSize, delay)
	return s, nil
}

func (s *Store) initBuckets() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		st, err := tx.CreateBucketIfNotExists(bucketState)
		if err != nil {
			return err
		}
		if v := st.Get(keyVersion); v != nil {
			if len(v) != 8 || binary.BigEndian.Uint64(v) != schemaVersion {
				return fmt.Errorf("schema version %x, want %d: %w", v, schemaVersion, ErrIncompatible)
			}
		} else if err := st.Put(keyVersion, binary.BigEndian.AppendUint64(nil, schemaVersion)); err != nil {
			return err
		}
		for _, name := range [][]byte{bucketSessions, bucketResults, bucketExpiry, bucketKV} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		// The event journal moved out of this file (the daemon's jsonl
		// journal); an older file's is freed for reuse.
		if tx.Bucket(oldBucketEvents) != nil {
			if err := tx.DeleteBucket(oldBucketEvents); err != nil {
				return err
			}
			if err := st.Delete(oldKeyEventCount); err != nil {
				return err
			}
		}
		return nil
	})
}

// Close commits every write already accepted, then closes the file.
// Writes after Close fail with ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.c.stop()
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// Path is the state file's path.
func (s *Store) Path() string { return s.path }

// Stats are the committer's counters since Open.
type Stats struct {
	Commits uint64 // write transactions committed
	Writes  uint64 // writes applied in them
}

// Stats returns the committer's counters; Writes/Commits is the mean
// number of writes sharing one fsync.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.c.commits.Load(), Writes: s.c.writes.Load()}
}

// view runs a read transaction, mapping a closed database to ErrClosed.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	if s.c.isClosed() {
		return ErrClosed
	}
	err := s.db.View(fn)
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func checkName(what, v string) error {
	if v == "" || len(v) > maxNameLen {
		return fmt.Errorf("%s %q: must be 1 to %d bytes: %w", what, v, maxNameLen, ErrInvalid)
	}
	return nil
}
