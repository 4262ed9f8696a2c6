package cluster

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/resilienced/resilienced/internal/session"
)

// The key space of one cluster in etcd, under /resilienced/<cluster>/:
//
//	nodes/<node>                      NodeInfo, on the node's lease
//	owners/<pool>/<session>           ownerRecord, on the owner's lease; its ModRevision is the epoch
//	meta/<pool>/<session>             sessionMeta: the next exchange's seq and the window's first
//	ctx/<pool>/<session>/<seq:%016x>  exchangeRecord, one per validated exchange
//	results/<pool>/<idempotency key>  resultRecord
//	isolated/<node>                   Isolation: an operator's isolation of a node (durable)
//
// Pool names are [a-z][a-z0-9-]* (config); session ids and idempotency
// keys are escaped (url.QueryEscape: no '/' left), so a session's prefix
// never matches another session's keys.
type keys struct{ prefix string }

func newKeys(cluster string) keys { return keys{prefix: "/resilienced/" + cluster + "/"} }

func (k keys) nodes() string           { return k.prefix + "nodes/" }
func (k keys) node(name string) string { return k.nodes() + name }
func (k keys) owners() string          { return k.prefix + "owners/" }
func (k keys) isolations() string      { return k.prefix + "isolated/" }
func (k keys) isolation(node string) string {
	return k.isolations() + node
}
func (k keys) owner(pool, s string) string {
	return k.owners() + pool + "/" + url.QueryEscape(s)
}
func (k keys) meta(pool, s string) string {
	return k.prefix + "meta/" + pool + "/" + url.QueryEscape(s)
}
func (k keys) ctx(pool, s string) string {
	return k.prefix + "ctx/" + pool + "/" + url.QueryEscape(s) + "/"
}
func (k keys) exchange(pool, s string, seq uint64) string {
	return fmt.Sprintf("%s%016x", k.ctx(pool, s), seq)
}
func (k keys) result(pool, key string) string {
	return k.prefix + "results/" + pool + "/" + url.QueryEscape(key)
}

// sessionOf parses an owner key back into pool and session.
func (k keys) sessionOf(ownerKey string) (pool, s string, ok bool) {
	rest, ok := strings.CutPrefix(ownerKey, k.owners())
	if !ok {
		return "", "", false
	}
	pool, esc, ok := strings.Cut(rest, "/")
	if !ok {
		return "", "", false
	}
	s, err := url.QueryUnescape(esc)
	return pool, s, err == nil
}

// maxNameBytes bounds pool names, session ids and idempotency keys, as
// the local store does.
const maxNameBytes = 1024

func checkName(what, s string) error {
	if s == "" || len(s) > maxNameBytes {
		return fmt.Errorf("%s %q: must be 1 to %d bytes: %w", what, s, maxNameBytes, session.ErrInvalid)
	}
	return nil
}
