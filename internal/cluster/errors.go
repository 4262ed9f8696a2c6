package cluster

import (
	"errors"
	"fmt"
)

var (
	// ErrNotOwner means another live node owns the session: the call
	// belongs there (NotOwnerError says which node and epoch).
	ErrNotOwner = errors.New("session owned by another node")

	// ErrFenced means this node's ownership of a session ended (another
	// node took it over, or this node's lease expired): the write was
	// refused by etcd and nothing was stored. The session is no longer
	// served here.
	ErrFenced = errors.New("ownership lost: write fenced")

	// ErrLeaseExpiring means this node cannot confirm its etcd lease by
	// its own clock: it stops serving its sessions until it has one again.
	ErrLeaseExpiring = errors.New("node lease not confirmed")

	// ErrTooLarge means an exchange (or result) exceeds what one etcd
	// request may carry.
	ErrTooLarge = errors.New("too large for the replicated store")

	// ErrClosed is returned once the node has left the cluster.
	ErrClosed = errors.New("cluster node closed")
)

// NotOwnerError names the owner of a session, for a forwarder.
type NotOwnerError struct {
	Pool, Session string
	Node          string // the owner
	Epoch         int64  // the owner record's revision, for a takeover
}

func (e *NotOwnerError) Error() string {
	return fmt.Sprintf("session %s/%s: %v: %s (epoch %d)", e.Pool, e.Session, ErrNotOwner, e.Node, e.Epoch)
}

func (e *NotOwnerError) Unwrap() error { return ErrNotOwner }
