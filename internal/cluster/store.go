package cluster

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/resilienced/resilienced/internal/session"
)

// DefaultMaxExchangeBytes bounds one exchange, with its idempotent result
// and their keys, as one etcd transaction carries them. etcd refuses a
// request over 1.5 MiB (--max-request-bytes, by default); the rest of the
// transaction (the owner comparison, the window's meta, the deletes of
// trimmed exchanges) is small, so 1 MiB leaves room.
const DefaultMaxExchangeBytes = 1 << 20

// StoreOptions configure a Store.
type StoreOptions struct {
	// MaxExchangeBytes: 0 means DefaultMaxExchangeBytes.
	MaxExchangeBytes int
	// OnLost is told when this node stops owning a session it owned:
	// another node took it over, its own lease could not be confirmed, or
	// a write was fenced. The daemon isolates the agents that served it.
	// It must not block.
	OnLost func(pool, session string, err error)
	Logger *slog.Logger
}

// Store keeps session contexts and idempotent results in etcd, with
// ownership: a node serves a session only while it owns its owner record,
// and every write of the session is one transaction conditioned on the
// epoch (the owner record's revision) that the node saw when it took the
// session, so the writes of a node that lost the session fail. It has the
// methods of the supervisor's SessionStore.
type Store struct {
	node *Node
	cli  *clientv3.Client
	keys keys
	opts StoreOptions
	log  *slog.Logger

	mu    sync.Mutex
	owned map[sessionKey]*ownership
	// refused holds the results found stored when this node's own write
	// of the same idempotency key was refused (another attempt of the
	// call committed first), until the Result call that follows reads
	// them: Result reads the node's etcd member, which may not have them
	// yet.
	refused map[string]resultRecord
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type mvccKV = mvccpb.KeyValue

type sessionKey struct{ pool, session string }

// ownership is what the owner keeps of a session it owns: its epoch and a
// cache of its window, so that a call reads no more than it must.
type ownership struct {
	mu     sync.Mutex // serializes the session's writes
	epoch  int64
	next   uint64 // seq of the next exchange
	window []session.Exchange
	bytes  int64 // of the window's inputs and outputs
	gone   bool  // dropped from Store.owned: take the session again
}

type ownerRecord struct {
	Node  string    `json:"node"`
	Since time.Time `json:"since"`
}

type sessionMeta struct {
	Next uint64 `json:"next"` // seq of the next exchange
}

// exchangeRecord is an exchange as stored, with the epoch and node that
// committed it: which node wrote what, under which ownership, can be
// checked in etcd afterwards.
type exchangeRecord struct {
	session.Exchange
	Epoch int64  `json:"epoch"`
	Node  string `json:"node"`
}

type resultRecord struct {
	Digest  []byte          `json:"digest,omitempty"`
	Result  json.RawMessage `json:"result"`
	Session string          `json:"session,omitempty"`
	Seq     uint64          `json:"seq,omitempty"`
	Created time.Time       `json:"created"`
}

// NewStore returns the session store of node. Its sessions are dropped
// when the node loses its lease.
func NewStore(node *Node, opts StoreOptions) *Store {
	if opts.MaxExchangeBytes <= 0 {
		opts.MaxExchangeBytes = DefaultMaxExchangeBytes
	}
	if opts.Logger == nil {
		opts.Logger = node.log
	}
	s := &Store{node: node, cli: node.cli, keys: node.keys, opts: opts, log: opts.Logger, owned: map[sessionKey]*ownership{}, refused: map[string]resultRecord{}}
	node.OnLeaseLost(func(err error) { s.dropAll(err, true) })
	node.OnIsolated(func(isolated bool, iso Isolation) {
		if isolated {
			s.dropAll(fmt.Errorf("%w: node isolated by %s: %s", ErrFenced, iso.By, iso.Reason), true)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go s.watchOwners(ctx)
	return s
}

// Close stops the store's watch. The sessions stay owned in etcd until
// the node's lease ends.
func (s *Store) Close() {
	s.cancel()
	s.wg.Wait()
}

// Owned reports whether this node owns the session, and its epoch.
func (s *Store) Owned(pool, sess string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.owned[sessionKey{pool, sess}]
	if !ok {
		return 0, false
	}
	return o.epoch, true
}

// OwnedSessions are the sessions this node owns now (of pool, or of
// every pool when pool is ""), from its cache, by pool and id: what
// `resilientctl sessions` shows of a node in cluster mode.
func (s *Store) OwnedSessions(pool string) []session.SessionInfo {
	s.mu.Lock()
	owned := make(map[sessionKey]*ownership, len(s.owned))
	for k, o := range s.owned {
		if pool == "" || k.pool == pool {
			owned[k] = o
		}
	}
	s.mu.Unlock()
	out := make([]session.SessionInfo, 0, len(owned))
	for k, o := range owned {
		o.mu.Lock()
		info := session.SessionInfo{Pool: k.pool, ID: k.session, Entries: len(o.window), Bytes: o.bytes}
		if n := len(o.window); n > 0 {
			info.Updated = o.window[n-1].Time
		}
		o.mu.Unlock()
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b session.SessionInfo) int {
		return cmp.Or(strings.Compare(a.Pool, b.Pool), strings.Compare(a.ID, b.ID))
	})
	return out
}

// OwnedContext is an owned session's window, oldest first, from the
// cache; false when this node does not own it (it takes nothing).
func (s *Store) OwnedContext(pool, sess string) ([]session.Exchange, bool) {
	s.mu.Lock()
	o, ok := s.owned[sessionKey{pool, sess}]
	s.mu.Unlock()
	if !ok {
		return nil, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.window), true
}

// Context returns the session's exchanges, oldest first. A session this
// node owns is served from its cache; one that no live node owns (never
// owned, its owner's lease ended, or its owner not serving) is taken
// over first. One that another serving node owns is refused with a
// *NotOwnerError naming it.
func (s *Store) Context(ctx context.Context, pool, sess string) ([]session.Exchange, error) {
	if err := checkSession(pool, sess); err != nil {
		return nil, err
	}
	o, err := s.own(ctx, pool, sess, -1)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]session.Exchange, len(o.window))
	copy(out, o.window)
	return out, nil
}

// TakeOver makes this node the session's owner if its owner record is
// still at epoch seen (0: no owner record), whoever owns it: the call a
// node makes when it has seen the owner dead (its connection reset, its
// heartbeat missed) before etcd has (its lease has not expired yet). It
// returns the new epoch; an owner record that changed since seen is
// refused with a *NotOwnerError naming the current owner.
func (s *Store) TakeOver(ctx context.Context, pool, sess string, seen int64) (int64, error) {
	if err := checkSession(pool, sess); err != nil {
		return 0, err
	}
	if seen < 0 {
		return 0, fmt.Errorf("cluster: take over %s/%s: epoch %d: %w", pool, sess, seen, session.ErrInvalid)
	}
	o, err := s.own(ctx, pool, sess, seen)
	if err != nil {
		return 0, err
	}
	return o.epoch, nil
}

// own returns the session's ownership, taking the session when no live
// node owns it, or, with seen >= 0, when its record is at epoch seen.
func (s *Store) own(ctx context.Context, pool, sess string, seen int64) (*ownership, error) {
	// Without quorum even a cached session is refused: its call could
	// not commit, and the agent's work would be lost.
	qctx, done, err := s.node.withQuorum(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: session %s/%s: %w", pool, sess, err)
	}
	defer done()
	ctx = clientv3.WithRequireLeader(qctx)
	lease, leaseOK := s.node.Lease()
	noLease := func() error {
		return fmt.Errorf("cluster: session %s/%s: %w: this node serves no session until it has its lease again", pool, sess, ErrLeaseExpiring)
	}
	if !leaseOK {
		// It owns nothing now; a session another node owns is still
		// found below, so that the call is forwarded there.
		s.dropAll(ErrLeaseExpiring, true)
		if seen >= 0 {
			return nil, noLease()
		}
	}
	if !s.node.Serving() {
		// Isolated or draining: the session belongs on a serving node,
		// which takes it from this one when the call gets there.
		s.dropAll(ErrFenced, true)
		return nil, s.notServing(pool, sess)
	}
	k := sessionKey{pool, sess}
	s.mu.Lock()
	o, ok := s.owned[k]
	s.mu.Unlock()
	if ok && seen < 0 {
		return o, nil
	}
	ownerKey := s.keys.owner(pool, sess)
	rec, _ := json.Marshal(ownerRecord{Node: s.node.Name(), Since: s.node.opts.Now().UTC()})
	for range 8 { // another node racing for the same free session: read again
		var cmp clientv3.Cmp
		if seen >= 0 {
			if seen == 0 {
				cmp = clientv3.Compare(clientv3.CreateRevision(ownerKey), "=", 0)
			} else {
				cmp = clientv3.Compare(clientv3.ModRevision(ownerKey), "=", seen)
			}
		} else {
			r, err := s.cli.Get(ctx, ownerKey)
			if err != nil {
				return nil, fmt.Errorf("cluster: session %s/%s: reading its owner: %w", pool, sess, s.node.quorumErr(ctx, qctx, err))
			}
			if len(r.Kvs) == 0 {
				cmp = clientv3.Compare(clientv3.CreateRevision(ownerKey), "=", 0)
			} else {
				kv := r.Kvs[0]
				var cur ownerRecord
				_ = json.Unmarshal(kv.Value, &cur)
				if cur.Node != s.node.Name() && s.serving(cur.Node) {
					return nil, &NotOwnerError{Pool: pool, Session: sess, Node: cur.Node, Epoch: kv.ModRevision}
				}
				// Free: its owner is not serving, or is this node's
				// previous incarnation or dropped ownership.
				cmp = clientv3.Compare(clientv3.ModRevision(ownerKey), "=", kv.ModRevision)
			}
		}
		if !leaseOK {
			return nil, noLease()
		}
		r, err := s.cli.Txn(ctx).If(cmp).Then(
			clientv3.OpPut(ownerKey, string(rec), clientv3.WithLease(lease)),
			clientv3.OpGet(s.keys.meta(pool, sess)),
			clientv3.OpGet(s.keys.ctx(pool, sess), clientv3.WithPrefix()),
		).Else(clientv3.OpGet(ownerKey)).Commit()
		if err != nil {
			return nil, fmt.Errorf("cluster: session %s/%s: taking it: %w", pool, sess, s.node.quorumErr(ctx, qctx, err))
		}
		if !r.Succeeded {
			if seen >= 0 {
				return nil, s.notOwner(pool, sess, r.Responses[0].GetResponseRange().Kvs)
			}
			continue
		}
		o, err := s.load(pool, sess, r.Header.Revision, r.Responses[1].GetResponseRange().Kvs, r.Responses[2].GetResponseRange().Kvs)
		if err != nil {
			return nil, err
		}
		// s.mu is never held while waiting for a session's lock: Append
		// holds that lock across its transaction and then takes s.mu.
		// The old ownership's writes are fenced by etcd meanwhile.
		s.mu.Lock()
		old, hadOld := s.owned[k]
		s.owned[k] = o
		s.mu.Unlock()
		if hadOld {
			old.mu.Lock()
			old.gone = true
			old.mu.Unlock()
		}
		s.log.Debug("cluster: session taken", "pool", pool, "session", sess, "epoch", o.epoch)
		return o, nil
	}
	return nil, fmt.Errorf("cluster: session %s/%s: its owner record keeps changing; try again", pool, sess)
}

// notServing names the serving node where the session belongs, for a
// node that serves no session.
func (s *Store) notServing(pool, sess string) error {
	to, ok := s.node.Place(pool + "/" + sess)
	if to == s.node.Name() { // the ring has not heard of this node's health yet
		ok = false
		for _, m := range s.node.Members() {
			if m.Name != to && m.Health == Serving {
				to, ok = m.Name, true
				break
			}
		}
	}
	if !ok {
		return fmt.Errorf("cluster: session %s/%s: %w: this node is %s and no other node serves", pool, sess, ErrFenced, s.node.Info().Health)
	}
	return &NotOwnerError{Pool: pool, Session: sess, Node: to}
}

// notOwner describes the owner record found by a failed takeover.
func (s *Store) notOwner(pool, sess string, kvs []*mvccKV) error {
	e := &NotOwnerError{Pool: pool, Session: sess}
	if len(kvs) > 0 {
		var cur ownerRecord
		_ = json.Unmarshal(kvs[0].Value, &cur)
		e.Node, e.Epoch = cur.Node, kvs[0].ModRevision
	}
	return e
}

// serving reports whether node is registered and serving: a node that is
// not (its lease expired, or it is draining or isolated) owns nothing.
func (s *Store) serving(node string) bool {
	m, ok := s.node.Member(node)
	return ok && m.Health == Serving
}

// load builds the ownership of a session just taken at epoch from its
// meta and exchanges read in the same transaction.
func (s *Store) load(pool, sess string, epoch int64, meta, exs []*mvccKV) (*ownership, error) {
	o := &ownership{epoch: epoch, next: 1, window: make([]session.Exchange, 0, len(exs))}
	if len(meta) > 0 {
		var m sessionMeta
		if err := json.Unmarshal(meta[0].Value, &m); err != nil {
			return nil, fmt.Errorf("cluster: session %s/%s: meta: %w: %v", pool, sess, session.ErrCorrupt, err)
		}
		o.next = max(m.Next, 1)
	}
	for _, kv := range exs {
		var rec exchangeRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return nil, fmt.Errorf("cluster: session %s/%s: exchange %s: %w: %v", pool, sess, kv.Key, session.ErrCorrupt, err)
		}
		o.window = append(o.window, rec.Exchange)
		o.bytes += int64(len(rec.Input) + len(rec.Output))
		o.next = max(o.next, rec.Seq+1)
	}
	return o, nil
}

// Append commits ex to the session in one etcd transaction, conditioned
// on this node's epoch (a node that lost the session writes nothing and
// gets ErrFenced), trims the window to lim, and returns once etcd has
// committed it (a Raft quorum has it). With an idemKey the result is
// stored in the same transaction; a key already answered gives
// session.ErrDuplicate or session.ErrConflict, as the local store does.
// lim.TTL is not applied in cluster mode (sessions do not expire yet).
func (s *Store) Append(ctx context.Context, pool, sess string, ex session.Exchange, lim session.Limit, idemKey string, result json.RawMessage) (session.Exchange, error) {
	if err := checkSession(pool, sess); err != nil {
		return session.Exchange{}, err
	}
	if idemKey != "" {
		if err := checkName("idempotency key", idemKey); err != nil {
			return session.Exchange{}, err
		}
	}
	if _, ok := s.node.Lease(); !ok {
		s.dropAll(ErrLeaseExpiring, true)
		return session.Exchange{}, fmt.Errorf("cluster: append to %s/%s: %w", pool, sess, ErrLeaseExpiring)
	}
	k := sessionKey{pool, sess}
	s.mu.Lock()
	o, ok := s.owned[k]
	s.mu.Unlock()
	if !ok {
		return session.Exchange{}, fmt.Errorf("cluster: append to %s/%s: %w: this node does not own it", pool, sess, ErrFenced)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.gone {
		return session.Exchange{}, fmt.Errorf("cluster: append to %s/%s: %w: this node no longer owns it", pool, sess, ErrFenced)
	}
	if ex.Time.IsZero() {
		ex.Time = s.node.opts.Now()
	}
	ex.Seq = o.next
	xv, err := json.Marshal(exchangeRecord{Exchange: ex, Epoch: o.epoch, Node: s.node.Name()})
	if err != nil {
		return session.Exchange{}, fmt.Errorf("cluster: append to %s/%s: %w", pool, sess, err)
	}
	var rv []byte
	resultKey := ""
	if idemKey != "" {
		resultKey = s.keys.result(pool, idemKey)
		rv, _ = json.Marshal(resultRecord{Digest: session.RequestDigest(sess, ex.Input), Result: result, Session: sess, Seq: ex.Seq, Created: ex.Time.UTC()})
	}
	xkey := s.keys.exchange(pool, sess, ex.Seq)
	if size := len(xkey) + len(xv) + len(resultKey) + len(rv); size > s.opts.MaxExchangeBytes {
		return session.Exchange{}, fmt.Errorf("cluster: append to %s/%s: %w: the exchange is %d bytes with its result; cluster mode stores at most %d bytes per exchange (etcd takes at most 1.5 MiB a request by default)",
			pool, sess, ErrTooLarge, size, s.opts.MaxExchangeBytes)
	}

	// The window after this exchange, trimmed from the oldest.
	window := append(o.window[:len(o.window):len(o.window)], ex)
	bytesNow := o.bytes + int64(len(ex.Input)+len(ex.Output))
	drop := 0
	for drop < len(window) && ((lim.Entries > 0 && len(window)-drop > lim.Entries) || (lim.Bytes > 0 && bytesNow > lim.Bytes)) {
		bytesNow -= int64(len(window[drop].Input) + len(window[drop].Output))
		drop++
	}
	meta, _ := json.Marshal(sessionMeta{Next: ex.Seq + 1})
	ownerKey := s.keys.owner(pool, sess)
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(ownerKey), "=", o.epoch)}
	ops := []clientv3.Op{
		clientv3.OpPut(xkey, string(xv)),
		clientv3.OpPut(s.keys.meta(pool, sess), string(meta)),
	}
	if resultKey != "" {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(resultKey), "=", 0))
		ops = append(ops, clientv3.OpPut(resultKey, string(rv)))
	}
	if drop > 0 {
		from := window[0].Seq
		to := ex.Seq + 1
		if drop < len(window) {
			to = window[drop].Seq
		}
		ops = append(ops, clientv3.OpDelete(s.keys.exchange(pool, sess, from), clientv3.WithRange(s.keys.exchange(pool, sess, to))))
	}
	elses := []clientv3.Op{clientv3.OpGet(ownerKey)}
	if resultKey != "" {
		elses = append(elses, clientv3.OpGet(resultKey))
	}
	qctx, done, err := s.node.withQuorum(ctx)
	if err != nil {
		return session.Exchange{}, fmt.Errorf("cluster: append to %s/%s: %w", pool, sess, err)
	}
	r, err := s.cli.Txn(clientv3.WithRequireLeader(qctx)).If(cmps...).Then(ops...).Else(elses...).Commit()
	done()
	if err != nil {
		// The outcome is unknown: the exchange may be committed. The
		// cache cannot be trusted; the next call reads the session again.
		o.gone = true
		s.forget(k, o)
		return session.Exchange{}, fmt.Errorf("cluster: append to %s/%s: the exchange may or may not be committed: %w", pool, sess, s.node.quorumErr(ctx, qctx, err))
	}
	if !r.Succeeded {
		owner := r.Responses[0].GetResponseRange().Kvs
		if len(owner) == 0 || owner[0].ModRevision != o.epoch {
			o.gone = true
			s.forget(k, o)
			err := s.notOwner(pool, sess, owner)
			s.lost(pool, sess, err)
			return session.Exchange{}, fmt.Errorf("cluster: append to %s/%s at epoch %d: %w: %w", pool, sess, o.epoch, ErrFenced, err)
		}
		return s.duplicate(pool, sess, idemKey, ex.Input, r.Responses[1].GetResponseRange().Kvs)
	}
	o.window = window[drop:]
	o.bytes = bytesNow
	o.next = ex.Seq + 1
	return ex, nil
}

// duplicate answers an Append whose idempotency key was already answered.
func (s *Store) duplicate(pool, sess, idemKey string, input json.RawMessage, kvs []*mvccKV) (session.Exchange, error) {
	if len(kvs) == 0 {
		return session.Exchange{}, fmt.Errorf("cluster: append to %s/%s: key %q: the transaction failed with no stored result", pool, sess, idemKey)
	}
	var rec resultRecord
	if err := json.Unmarshal(kvs[0].Value, &rec); err != nil {
		return session.Exchange{}, fmt.Errorf("cluster: result %s/%q: %w: %v", pool, idemKey, session.ErrCorrupt, err)
	}
	s.keepRefused(s.keys.result(pool, idemKey), rec)
	if rec.Digest != nil && !bytes.Equal(rec.Digest, session.RequestDigest(sess, input)) {
		return session.Exchange{}, fmt.Errorf("cluster: append to %s/%s: key %q: %w", pool, sess, idemKey, session.ErrConflict)
	}
	return session.Exchange{Seq: rec.Seq, Input: input, Output: rec.Result}, fmt.Errorf("cluster: append to %s/%s: key %q: %w", pool, sess, idemKey, session.ErrDuplicate)
}

// PutResult stores a sessionless call's result under its idempotency key,
// committed in etcd before it returns; a key already answered gives
// session.ErrDuplicate or session.ErrConflict. Results do not expire in
// cluster mode yet.
func (s *Store) PutResult(ctx context.Context, pool, idemKey string, digest []byte, result json.RawMessage) error {
	if err := checkName("pool", pool); err != nil {
		return err
	}
	if err := checkName("idempotency key", idemKey); err != nil {
		return err
	}
	key := s.keys.result(pool, idemKey)
	v, _ := json.Marshal(resultRecord{Digest: digest, Result: result, Created: s.node.opts.Now().UTC()})
	if len(key)+len(v) > s.opts.MaxExchangeBytes {
		return fmt.Errorf("cluster: put result %s/%q: %w: %d bytes; cluster mode stores at most %d bytes per result (etcd takes at most 1.5 MiB a request by default)", pool, idemKey, ErrTooLarge, len(key)+len(v), s.opts.MaxExchangeBytes)
	}
	qctx, done, err := s.node.withQuorum(ctx)
	if err != nil {
		return fmt.Errorf("cluster: put result %s/%q: %w", pool, idemKey, err)
	}
	r, err := s.cli.Txn(clientv3.WithRequireLeader(qctx)).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(v))).Else(clientv3.OpGet(key)).Commit()
	done()
	if err != nil {
		return fmt.Errorf("cluster: put result %s/%q: %w", pool, idemKey, s.node.quorumErr(ctx, qctx, err))
	}
	if r.Succeeded {
		return nil
	}
	var rec resultRecord
	if kvs := r.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 && json.Unmarshal(kvs[0].Value, &rec) == nil {
		s.keepRefused(key, rec)
		if rec.Digest != nil && digest != nil && !bytes.Equal(rec.Digest, digest) {
			return fmt.Errorf("cluster: put result %s/%q: %w", pool, idemKey, session.ErrConflict)
		}
	}
	return fmt.Errorf("cluster: put result %s/%q: %w", pool, idemKey, session.ErrDuplicate)
}

// Result returns the stored result of a completed call, false if there is
// none. It reads the etcd member this node is connected to, without a
// Raft round trip (a serializable read: the first thing every call with a
// key does, it must not cost a quorum): a result is written once and
// never changed, so one found is the answer; one that a lagging member
// does not show yet only lets the call run again, and its commit,
// conditioned on the key being absent, is refused with the stored result
// (session.ErrDuplicate), which is kept for the Result that follows.
func (s *Store) Result(ctx context.Context, pool, idemKey string, digest []byte) (json.RawMessage, bool, error) {
	if err := checkName("pool", pool); err != nil {
		return nil, false, err
	}
	if err := checkName("idempotency key", idemKey); err != nil {
		return nil, false, err
	}
	key := s.keys.result(pool, idemKey)
	s.mu.Lock()
	rec, ok := s.refused[key]
	delete(s.refused, key)
	s.mu.Unlock()
	if !ok {
		qctx, done, err := s.node.withQuorum(ctx)
		if err != nil {
			return nil, false, fmt.Errorf("cluster: result %s/%q: %w", pool, idemKey, err)
		}
		r, err := s.cli.Get(clientv3.WithRequireLeader(qctx), key, clientv3.WithSerializable())
		done()
		if err != nil {
			return nil, false, fmt.Errorf("cluster: result %s/%q: %w", pool, idemKey, s.node.quorumErr(ctx, qctx, err))
		}
		if len(r.Kvs) == 0 {
			return nil, false, nil
		}
		if err := json.Unmarshal(r.Kvs[0].Value, &rec); err != nil {
			return nil, false, fmt.Errorf("cluster: result %s/%q: %w: %v", pool, idemKey, session.ErrCorrupt, err)
		}
	}
	if rec.Digest != nil && digest != nil && !bytes.Equal(rec.Digest, digest) {
		return nil, false, fmt.Errorf("cluster: result %s/%q: %w", pool, idemKey, session.ErrConflict)
	}
	if rec.Result == nil {
		rec.Result = json.RawMessage{}
	}
	return rec.Result, true, nil
}

// maxRefused bounds the results kept for Result after a refused write;
// past it they are dropped (a Result then reads etcd).
const maxRefused = 1024

func (s *Store) keepRefused(key string, rec resultRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.refused) >= maxRefused {
		clear(s.refused)
	}
	s.refused[key] = rec
}

// forget drops o from the owned sessions if it is still the one there.
func (s *Store) forget(k sessionKey, o *ownership) {
	s.mu.Lock()
	if s.owned[k] == o {
		delete(s.owned, k)
	}
	s.mu.Unlock()
}

func (s *Store) lost(pool, sess string, err error) {
	s.log.Warn("cluster: session lost", "pool", pool, "session", sess, "err", err)
	if s.opts.OnLost != nil {
		s.opts.OnLost(pool, sess, err)
	}
}

// dropAll gives up every session: the node cannot confirm its lease
// (lost) or its cache (not lost: the sessions are read again).
func (s *Store) dropAll(err error, lost bool) {
	s.mu.Lock()
	owned := s.owned
	s.owned = map[sessionKey]*ownership{}
	s.mu.Unlock()
	for k, o := range owned {
		o.mu.Lock()
		o.gone = true
		o.mu.Unlock()
		if lost {
			s.lost(k.pool, k.session, err)
		}
	}
}

// watchOwners drops, as soon as etcd says so, every session this node
// owns whose owner record another node took or that was deleted (this
// node's lease expired). The epoch check on every write is what makes a
// stale owner harmless; the watch makes it stop serving at once rather
// than at its next write. After a watch error every session is read
// again before it is served.
func (s *Store) watchOwners(ctx context.Context) {
	defer s.wg.Done()
	prefix := s.keys.owners()
	for ctx.Err() == nil {
		wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix())
		for resp := range wch {
			if resp.Err() != nil {
				break
			}
			for _, ev := range resp.Events {
				pool, sess, ok := s.keys.sessionOf(string(ev.Kv.Key))
				if !ok {
					continue
				}
				k := sessionKey{pool, sess}
				s.mu.Lock()
				o, mine := s.owned[k]
				s.mu.Unlock()
				if !mine {
					continue
				}
				var rec ownerRecord
				if ev.Type == clientv3.EventTypePut {
					_ = json.Unmarshal(ev.Kv.Value, &rec)
					if rec.Node == s.node.Name() {
						continue // this node's own takeover
					}
				}
				o.mu.Lock()
				o.gone = true
				o.mu.Unlock()
				s.forget(k, o)
				err := fmt.Errorf("%w: owner record of %s/%s deleted (lease expired)", ErrFenced, pool, sess)
				if rec.Node != "" {
					err = &NotOwnerError{Pool: pool, Session: sess, Node: rec.Node, Epoch: ev.Kv.ModRevision}
				}
				s.lost(pool, sess, err)
			}
		}
		if ctx.Err() != nil {
			return
		}
		// Events may have been missed: trust no cache.
		s.dropAll(nil, false)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func checkSession(pool, sess string) error {
	if err := checkName("pool", pool); err != nil {
		return err
	}
	return checkName("session", sess)
}
