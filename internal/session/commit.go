package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// A write is a function applied inside a read-write transaction. It may be
// applied more than once (when another write in its batch fails, the batch
// is retried without that one), so it must set its outputs afresh on each
// run and have no effect outside the transaction.
type writeFunc func(*bolt.Tx) error

// op is one write queued for the committer.
type op struct {
	fn    writeFunc  // nil: a barrier, done once everything queued before it is
	done  chan error // nil when nobody waits
	state atomic.Uint32
}

const (
	opPending  uint32 = iota
	opTaken           // the committer owns it; its caller waits for the result
	opCanceled        // its caller gave up before the committer took it
)

func (o *op) finish(err error) {
	if o.done != nil {
		o.done <- err
	}
}

// committer is the group commit: one goroutine takes every queued write,
// applies them in one transaction, and only after its fsync'd commit wakes
// their callers. While it commits, new writes queue up and go together in
// the next transaction, so the number of writes per fsync grows with load.
type committer struct {
	s        *Store
	maxBatch int
	delay    time.Duration

	mu     sync.Mutex
	want   int // queue length that ends gather early: the last batch's size
	queue  []*op
	spare  []*op // the previous batch's slice, reused; loop goroutine only
	closed bool
	// isDown mirrors closed for readers, which must not take mu.
	isDown atomic.Bool

	wake chan struct{} // something is queued, or closing
	full chan struct{} // the queue reached maxBatch
	done chan struct{} // the loop has exited

	commits atomic.Uint64
	writes  atomic.Uint64
}

func (c *committer) start(s *Store, maxBatch int, delay time.Duration) {
	c.s = s
	c.maxBatch = maxBatch
	c.delay = delay
	c.want = 1
	c.wake = make(chan struct{}, 1)
	c.full = make(chan struct{}, 1)
	c.done = make(chan struct{})
	go c.loop()
}

func (c *committer) isClosed() bool { return c.isDown.Load() }

// stop refuses new writes, lets the loop commit what is queued, and waits
// for it to exit.
func (c *committer) stop() {
	c.mu.Lock()
	c.closed = true
	c.isDown.Store(true)
	c.mu.Unlock()
	signal(c.wake)
	<-c.done
}

func (c *committer) enqueue(o *op) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.queue = append(c.queue, o)
	enough := len(c.queue) >= c.want
	c.mu.Unlock()
	signal(c.wake)
	if enough {
		signal(c.full)
	}
	return nil
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *committer) loop() {
	defer close(c.done)
	for range c.wake {
		if c.delay > 0 {
			c.gather()
		}
		for {
			c.mu.Lock()
			var batch []*op
			if len(c.queue) <= c.maxBatch {
				batch, c.queue = c.queue, c.spare[:0]
			} else {
				batch = append(c.spare[:0], c.queue[:c.maxBatch]...)
				clear(c.queue[:c.maxBatch])
				c.queue = c.queue[c.maxBatch:]
			}
			c.spare = nil
			if len(batch) > 0 {
				c.want = len(batch)
			}
			empty, closed := len(c.queue) == 0, c.closed
			c.mu.Unlock()

			if len(batch) > 0 {
				c.run(batch)
				clear(batch)
				c.spare = batch[:0]
			}
			if empty {
				if closed {
					return
				}
				break
			}
		}
	}
}

// gather waits up to delay for as many writes as the last batch had (the
// callers it woke are likely to be back with their next write), so steady
// concurrent writers share each commit without waiting the full delay, and
// a lone writer does not wait at all.
func (c *committer) gather() {
	c.mu.Lock()
	n, closed := len(c.queue), c.closed
	c.mu.Unlock()
	if n >= c.want || closed {
		return
	}
	select { // a stale signal from an earlier batch
	case <-c.full:
	default:
	}
	t := time.NewTimer(c.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.full:
	}
}

// run applies one batch in one transaction. A write that fails is taken
// out and reported to its caller alone, and the rest is retried, as bbolt
// has no savepoints to roll back a single write.
func (c *committer) run(batch []*op) {
	live := batch[:0]
	for _, o := range batch {
		if o.state.CompareAndSwap(opPending, opTaken) {
			live = append(live, o)
		}
	}
	var err error
	for {
		n := 0
		for _, o := range live {
			if o.fn != nil {
				n++
			}
		}
		if n == 0 {
			break
		}
		failed, failErr := -1, error(nil)
		err = c.s.db.Update(func(tx *bolt.Tx) error {
			for i, o := range live {
				if o.fn == nil {
					continue
				}
				if err := safeCall(o.fn, tx); err != nil {
					failed, failErr = i, err
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			live[failed].finish(failErr)
			live = append(live[:failed], live[failed+1:]...)
			continue
		}
		if err != nil {
			c.s.log.Error("session store commit failed", "path", c.s.path, "writes", n, "err", err)
			err = fmt.Errorf("commit: %w", mapClosed(err))
		} else {
			c.commits.Add(1)
			c.writes.Add(uint64(n))
		}
		break
	}
	for _, o := range live {
		o.finish(err)
	}
}

func safeCall(fn writeFunc, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("session store write panicked: %v", p)
		}
	}()
	return fn(tx)
}

func mapClosed(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// write applies fn durably: it returns once fn's transaction is committed
// and fsync'd. If ctx ends while the write is still queued, it is dropped
// and ctx's error returned; once the committer has taken it, write waits
// for the commit, so a nil error always means "on disk" and an error
// (other than a commit error) means "not applied".
func (s *Store) write(ctx context.Context, fn writeFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch s.mode {
	case commitSolo:
		if s.c.isClosed() {
			return ErrClosed
		}
		return mapClosed(s.db.Update(fn))
	case commitBoltBatch:
		if s.c.isClosed() {
			return ErrClosed
		}
		return mapClosed(s.db.Batch(fn))
	}
	o := &op{fn: fn, done: make(chan error, 1)}
	if err := s.c.enqueue(o); err != nil {
		return err
	}
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		if o.state.CompareAndSwap(opPending, opCanceled) {
			return ctx.Err()
		}
		return <-o.done
	}
}
