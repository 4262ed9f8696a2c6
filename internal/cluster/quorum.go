package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultQuorumTimeout is how long etcd may go without confirming a
// linearizable read before the node takes it for without quorum: longer
// than a write takes on a loaded cluster, far shorter than etcd's own
// request timeout (7 s with its defaults), which is what a session write
// waited for before.
const DefaultQuorumTimeout = time.Second

// ErrNoQuorum means etcd cannot commit (no leader, a minority of its
// members reachable) as this node sees it: session calls fail at once,
// sessionless calls go on, and sessions are served again when etcd
// answers.
var ErrNoQuorum = errors.New("etcd has no quorum")

// QuorumError is ErrNoQuorum with since when and why.
type QuorumError struct {
	Since time.Time // the last linearizable read etcd confirmed
	Cause error     // the probe's error: a timeout, "no leader", ...
}

func (e *QuorumError) Error() string {
	return fmt.Sprintf("%v (nothing confirmed since %s: %v); session calls are refused until it returns",
		ErrNoQuorum, e.Since.UTC().Format("15:04:05.000"), e.Cause)
}

// Unwrap gives ErrNoQuorum only: the probe's own timeout is not the
// caller's deadline.
func (e *QuorumError) Unwrap() error { return ErrNoQuorum }

// RetryAfter is the wait suggested to a caller (HTTP Retry-After).
func (e *QuorumError) RetryAfter() time.Duration { return time.Second }

// quorum is the node's judgement of etcd's quorum, kept by watchQuorum.
// lost is a context cancelled, with the *QuorumError as its cause, when
// quorum is taken for lost; a new one replaces it when quorum returns.
type quorum struct {
	err    *QuorumError // nil: etcd answered within the timeout
	lost   context.Context
	cancel context.CancelCauseFunc
	// dropped is cancelled, with an ErrMemberDropped cause, when a
	// member leaves the client's endpoints (watchEndpoints): requests
	// that went to it would hang until gRPC's keep-alive gives up.
	dropped       context.Context
	cancelDropped context.CancelCauseFunc
	// confirmed is when the last probe that etcd confirmed started.
	confirmed time.Time
}

// ErrMemberDropped means the etcd member a request may have gone to
// stopped answering, and the request was given up rather than left
// hanging: its outcome is unknown; the call can be tried again.
var ErrMemberDropped = errors.New("etcd member stopped answering")

// Quorum returns nil while etcd confirms linearizable reads within the
// quorum timeout, else a *QuorumError (errors.Is ErrNoQuorum).
func (n *Node) Quorum() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.quorum.err == nil {
		return nil
	}
	return n.quorum.err
}

// withQuorum returns ctx, cancelled with a *QuorumError as its cause if
// quorum is taken for lost while a request runs, so that a request in
// flight fails within the quorum timeout rather than etcd's request
// timeout; it fails at once when quorum is already lost. Call done when
// the request is over.
func (n *Node) withQuorum(ctx context.Context) (_ context.Context, done func(), _ error) {
	n.mu.Lock()
	q := n.quorum
	n.mu.Unlock()
	if q.err != nil {
		return nil, nil, q.err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(q.lost, func() { cancel(context.Cause(q.lost)) })
	stopDropped := context.AfterFunc(q.dropped, func() { cancel(context.Cause(q.dropped)) })
	return ctx, func() { stop(); stopDropped(); cancel(nil) }, nil
}

// memberDropped gives up the requests in flight (they may have gone to
// the member dropped) and starts a new generation for those to come.
func (n *Node) memberDropped(err error) {
	n.mu.Lock()
	cancel := n.quorum.cancelDropped
	n.quorum.dropped, n.quorum.cancelDropped = context.WithCancelCause(context.Background())
	n.mu.Unlock()
	cancel(err)
}

// quorumErr returns err, or the *QuorumError that cancelled ctx (a ctx of
// withQuorum) if that is why the request failed. A request given up
// because its member dropped out waits for the node's next judgement of
// quorum: the member dropped may be the one whose loss took quorum with
// it (the endpoint probe sees a member gone before the quorum probe has
// failed twice), and then the caller is told there is no quorum, not
// to try again at once.
func (n *Node) quorumErr(ctx, qctx context.Context, err error) error {
	cause := context.Cause(qctx)
	var qe *QuorumError
	if errors.As(cause, &qe) {
		return qe
	}
	if errors.Is(cause, ErrMemberDropped) {
		if qe := n.judgeAfterDrop(ctx); qe != nil {
			return qe
		}
		return cause
	}
	return err
}

// judgeAfterDrop waits until a quorum probe that started from now is
// confirmed (nil) or quorum is taken for lost (its *QuorumError), for at
// most twice the quorum timeout or until ctx ends (nil: no verdict).
func (n *Node) judgeAfterDrop(ctx context.Context) *QuorumError {
	from := n.opts.Now()
	timeout := n.opts.QuorumTimeout
	deadline := time.NewTimer(2 * timeout)
	defer deadline.Stop()
	tick := time.NewTicker(timeout / 8)
	defer tick.Stop()
	for {
		n.mu.Lock()
		qe, confirmed := n.quorum.err, n.quorum.confirmed
		n.mu.Unlock()
		if qe != nil {
			return qe
		}
		if confirmed.After(from) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-deadline.C:
			return nil
		case <-tick.C:
		}
	}
}

// watchQuorum probes etcd with a linearizable read of the node's own
// registration (a Raft round: the leader confirms its leadership with a
// quorum) every quarter of the quorum timeout, each given half of it. A
// second probe in a row
// that fails after the timeout has gone by since the last confirmed one
// (they hung, or "no leader" kept coming) takes quorum for lost; the next
// confirmed one takes it for back.
func (n *Node) watchQuorum(ctx context.Context) {
	defer n.wg.Done()
	timeout := n.opts.QuorumTimeout
	every := timeout / 4
	lastOK, failed := n.opts.Now(), 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		start := n.opts.Now()
		pctx, cancel := context.WithTimeout(ctx, timeout/2)
		_, err := n.cli.Get(clientv3.WithRequireLeader(pctx), n.keys.node(n.opts.Node), clientv3.WithCountOnly())
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			lastOK, failed = start, 0
			n.mu.Lock()
			n.quorum.confirmed = start
			n.mu.Unlock()
			n.quorumBack()
			continue
		}
		// Two failures in a row: one probe may have gone to a member
		// cut off, which watchEndpoints takes out of the client's
		// endpoints meanwhile; the next goes to one that answers.
		if failed++; failed >= 2 && n.opts.Now().Sub(lastOK) >= timeout {
			n.quorumLost(&QuorumError{Since: lastOK, Cause: err})
		}
	}
}

func (n *Node) quorumLost(qe *QuorumError) {
	n.mu.Lock()
	if n.quorum.err != nil {
		n.mu.Unlock()
		return
	}
	n.quorum.err = qe
	cancel := n.quorum.cancel
	n.mu.Unlock()
	cancel(qe)
	n.log.Warn("cluster: etcd quorum lost: session calls fail until it returns", "since", qe.Since, "err", qe.Cause)
}

func (n *Node) quorumBack() {
	n.mu.Lock()
	if n.quorum.err == nil {
		n.mu.Unlock()
		return
	}
	since := n.quorum.err.Since
	n.resetQuorumLocked()
	n.mu.Unlock()
	n.log.Info("cluster: etcd quorum back: serving sessions again", "lost_for", n.opts.Now().Sub(since).Round(time.Millisecond))
}

func (n *Node) resetQuorumLocked() {
	n.quorum.err = nil
	n.quorum.lost, n.quorum.cancel = context.WithCancelCause(context.Background())
	if n.quorum.dropped == nil {
		n.quorum.dropped, n.quorum.cancelDropped = context.WithCancelCause(context.Background())
	}
}
