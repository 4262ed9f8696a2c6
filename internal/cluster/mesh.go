package cluster

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// Caller is this node's own call path: the supervisor.
type Caller interface {
	Call(ctx context.Context, pool string, req supervisor.CallRequest) (*supervisor.CallResult, error)
}

// Defaults of the inter-node connection.
const (
	// DefaultHeartbeat: every peer is pinged this often on its connection.
	DefaultHeartbeat = 50 * time.Millisecond
	// DefaultMisses: a peer from which nothing came back for this many
	// heartbeats is taken for dead (a machine down or cut off: ~200 ms on
	// an idle machine, more while its answers are slow; see heartbeat).
	DefaultMisses = 4
)

// MeshOptions configure a Mesh.
type MeshOptions struct {
	// Token authenticates nodes to each other: every inter-node request
	// carries it, and a request without it is refused.
	Token []byte
	// Local runs a call on this node.
	Local     Caller
	Heartbeat time.Duration
	Misses    int
	Logger    *slog.Logger
	// TLS, when set, makes the connection mutual TLS (see [MeshTLS]):
	// served and dialed with it; nil: h2c, the token alone.
	TLS *tls.Config
}

// Mesh is the inter-node connection: one long-lived HTTP/2 connection
// (unencrypted, h2c) to each peer, authenticated by the cluster token,
// carrying forwarded calls and a heartbeat. Any node serves any call:
// [Mesh.Call] runs a session's call where the session is owned, and
// takes the session over when its owner is seen dead.
type Mesh struct {
	node  *Node
	store *Store
	opts  MeshOptions
	log   *slog.Logger
	auth  string

	srv *http.Server

	mu    sync.Mutex
	peers map[string]*peer
	// owners remembers the owner last found for a session owned
	// elsewhere, so that its next calls go there without reading etcd;
	// a refusal or a failed connection forgets it.
	owners map[sessionKey]*NotOwnerError

	// cutOff, when set, says why this node is cut off the mesh network
	// (SetCutOff).
	cutOff atomic.Pointer[string]
	// views serves this node's read-only views to its peers (SetViews).
	views atomic.Pointer[http.Handler]

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// SetCutOff tells the mesh that this node's network to its peers is cut
// (the node Kill Switch; why says by whom) or, with "", restored. While
// cut, session calls are refused at once with node_isolated (503), so
// that a cluster-aware caller goes to another node instead of waiting on
// a forward that cannot arrive; sessionless calls go on.
func (m *Mesh) SetCutOff(why string) {
	if why == "" {
		m.cutOff.Store(nil)
		return
	}
	m.cutOff.Store(&why)
}

type peer struct {
	name, addr string
	client     *http.Client
	cancel     context.CancelFunc

	mu     sync.Mutex
	isDead bool
	deadCh chan struct{} // closed while the peer is taken for dead
}

func (p *peer) dead() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.isDead
}

// died is closed when the peer is next taken for dead (at once if it is).
func (p *peer) died() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.deadCh
}

// setDead marks the peer dead or alive; it reports whether that changed.
func (p *peer) setDead(dead bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isDead == dead {
		return false
	}
	p.isDead = dead
	if dead {
		close(p.deadCh)
	} else {
		p.deadCh = make(chan struct{})
	}
	return true
}

// forwardedCall is a call on the inter-node connection.
type forwardedCall struct {
	Pool    string          `json:"pool"`
	Session string          `json:"session"`
	Input   json.RawMessage `json:"input"`
	Key     string          `json:"key,omitempty"`
	// Timeout is what is left of the caller's deadline, in ms.
	Timeout int64 `json:"timeout_ms,omitempty"`
}

// codeNotOwner is the inter-node error code of a call that reached a node
// that does not own its session (ownership moved on the way).
const codeNotOwner = "not_owner"

// NewMesh returns the mesh of node; Serve starts serving peers.
func NewMesh(node *Node, store *Store, opts MeshOptions) (*Mesh, error) {
	if len(opts.Token) < 16 {
		return nil, errors.New("cluster: the cluster token must be at least 16 bytes")
	}
	if opts.Local == nil {
		return nil, errors.New("cluster: a mesh needs the node's own call path")
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.Misses <= 0 {
		opts.Misses = DefaultMisses
	}
	if opts.Logger == nil {
		opts.Logger = node.log
	}
	m := &Mesh{node: node, store: store, opts: opts, log: opts.Logger, auth: "Bearer " + string(opts.Token), peers: map[string]*peer{}, owners: map[sessionKey]*NotOwnerError{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cluster/v1/ping", m.servePing)
	mux.HandleFunc("POST /cluster/v1/call", m.serveCall)
	mux.HandleFunc("GET "+viewPrefix+"/", m.serveView)
	m.srv = &http.Server{Handler: m.authorize(mux), Protocols: m.protocols(), ReadHeaderTimeout: 10 * time.Second,
		// A refused TLS handshake (a stranger's certificate) is logged as
		// the daemon logs, not on stderr.
		ErrorLog: slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn)}
	if opts.TLS != nil {
		m.srv.TLSConfig = opts.TLS.Clone()
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Add(1)
	go m.followMembers(ctx)
	return m, nil
}

// Serve serves peers on l until Close.
func (m *Mesh) Serve(l net.Listener) error {
	var err error
	if m.opts.TLS != nil {
		err = m.srv.ServeTLS(l, "", "")
	} else {
		err = m.srv.Serve(l)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops serving peers and the heartbeats.
func (m *Mesh) Close() error {
	m.cancel()
	err := m.srv.Close()
	m.wg.Wait()
	m.mu.Lock()
	for name, p := range m.peers {
		p.cancel()
		p.client.CloseIdleConnections()
		delete(m.peers, name)
	}
	m.mu.Unlock()
	return err
}

func (m *Mesh) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte(m.auth)) != 1 {
			api.WriteError(w, &api.Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "cluster: missing or wrong cluster token"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (m *Mesh) servePing(w http.ResponseWriter, r *http.Request) {
	api.WriteJSON(w, http.StatusOK, map[string]string{"node": m.node.Name()})
}

// serveCall runs a forwarded call here. A session this node does not own
// is not taken: the forwarder decides (it may know the owner is alive).
func (m *Mesh) serveCall(w http.ResponseWriter, r *http.Request) {
	var fc forwardedCall
	if err := json.NewDecoder(io.LimitReader(r.Body, 2*DefaultMaxExchangeBytes)).Decode(&fc); err != nil {
		api.WriteError(w, &api.Error{Status: http.StatusBadRequest, Code: api.CodeBadRequest, Message: "cluster: forwarded call: " + err.Error()})
		return
	}
	ctx := r.Context()
	if fc.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(fc.Timeout)*time.Millisecond)
		defer cancel()
	}
	res, err := m.opts.Local.Call(ctx, fc.Pool, supervisor.CallRequest{Input: fc.Input, Session: fc.Session, IdempotencyKey: fc.Key})
	if err != nil {
		var no *NotOwnerError
		if errors.As(err, &no) || errors.Is(err, ErrFenced) {
			api.WriteError(w, &api.Error{Status: http.StatusConflict, Code: codeNotOwner, Message: err.Error()})
			return
		}
		api.WriteError(w, apiError(fc.Pool, fc.Session, err))
		return
	}
	api.WriteJSON(w, http.StatusOK, res)
}

// Call runs a call anywhere in the cluster: a sessionless call here; a
// session's call where its owner is: here if this node owns it or no
// serving node does (then it takes it), else forwarded to the owner over
// its connection. An owner whose connection fails or whose heartbeat
// stopped is taken over on the epoch seen, and the call runs here.
//
// A call without an idempotency key forwarded to an owner that died after
// committing it, but before answering, runs again here: use keys for
// exactly-once (the stored result is then the answer).
func (m *Mesh) Call(ctx context.Context, pool string, req supervisor.CallRequest) (*supervisor.CallResult, error) {
	res, err := m.call(ctx, pool, req)
	return res, apiError(pool, req.Session, err)
}

// apiError classifies what the API cannot (it does not know this
// package): etcd without quorum is the caller's 503, to try again,
// naming the session.
func apiError(pool, sess string, err error) error {
	if errors.Is(err, ErrMemberDropped) {
		return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable, Message: err.Error()}
	}
	var qe *QuorumError
	if !errors.As(err, &qe) {
		return err
	}
	msg := err.Error()
	if name := pool + "/" + sess; sess != "" && !strings.Contains(msg, name) {
		msg = "cluster: session " + name + ": " + msg
	}
	return &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeNoQuorum, Message: msg, Retry: qe.RetryAfter()}
}

func (m *Mesh) call(ctx context.Context, pool string, req supervisor.CallRequest) (*supervisor.CallResult, error) {
	if req.Session == "" {
		return m.opts.Local.Call(ctx, pool, req)
	}
	if why := m.cutOff.Load(); why != nil {
		// A forward cannot arrive and this node serves no session: the
		// caller is told at once to go to another node.
		return nil, &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeNodeIsolated,
			Message: fmt.Sprintf("cluster: session %s/%s: node %s is cut off its peers (%s); call another node", pool, req.Session, m.node.Name(), *why)}
	}
	k := sessionKey{pool, req.Session}
	var lastErr error
	for range 4 {
		no := m.knownOwner(k)
		if no == nil {
			res, err := m.opts.Local.Call(ctx, pool, req)
			if !errors.As(err, &no) {
				return res, err
			}
			lastErr = err
			m.rememberOwner(k, no)
		}
		p := m.peer(no.Node)
		if p == nil || p.dead() {
			m.forgetOwner(k)
			m.takeOver(ctx, pool, req.Session, no)
			continue
		}
		res, err := m.forward(ctx, p, pool, req)
		var ae *api.Error
		switch {
		case err == nil:
			return res, nil
		case errors.As(err, &ae) && ae.Code == codeNotOwner:
			// Ownership moved on the way: look again.
			m.forgetOwner(k)
		case errors.As(err, &ae):
			return nil, err // the owner's answer
		case ctx.Err() != nil:
			return nil, err
		default:
			// The connection failed (reset, refused, timed out): the
			// owner's daemon is gone. Take the session over.
			m.log.Info("cluster: owner unreachable, taking the session over", "pool", pool, "session", req.Session, "owner", no.Node, "err", err)
			p.setDead(true)
			m.forgetOwner(k)
			m.takeOver(ctx, pool, req.Session, no)
		}
		lastErr = err
	}
	return nil, fmt.Errorf("cluster: session %s/%s: no node could serve it: %w", pool, req.Session, lastErr)
}

// maxKnownOwners bounds the owners remembered; past it the memory is
// cleared (the next calls read etcd once each).
const maxKnownOwners = 1 << 16

func (m *Mesh) knownOwner(k sessionKey) *NotOwnerError {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.owners[k]
}

func (m *Mesh) rememberOwner(k sessionKey, no *NotOwnerError) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.owners) >= maxKnownOwners {
		clear(m.owners)
	}
	m.owners[k] = no
}

func (m *Mesh) forgetOwner(k sessionKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.owners, k)
}

// takeOver takes the session from no.Node, seen dead, on the epoch seen;
// its log says how long the etcd transaction took (make cluster-demo's
// breakdown of the takeover gap reads it).
func (m *Mesh) takeOver(ctx context.Context, pool, sess string, no *NotOwnerError) {
	start := time.Now()
	epoch, err := m.store.TakeOver(ctx, pool, sess, no.Epoch)
	tookMS := float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		m.log.Info("cluster: takeover refused", "pool", pool, "session", sess, "from", no.Node, "took_ms", tookMS, "err", err)
		return
	}
	m.log.Info("cluster: session taken over", "pool", pool, "session", sess, "from", no.Node, "epoch", epoch, "took_ms", tookMS)
}

func (m *Mesh) forward(ctx context.Context, p *peer, pool string, req supervisor.CallRequest) (*supervisor.CallResult, error) {
	fc := forwardedCall{Pool: pool, Session: req.Session, Input: req.Input, Key: req.IdempotencyKey}
	if d, ok := ctx.Deadline(); ok {
		fc.Timeout = max(time.Until(d).Milliseconds(), 1)
	}
	body, err := json.Marshal(fc)
	if err != nil {
		return nil, err
	}
	// A peer the heartbeat takes for dead while the call is on its way
	// (a machine down or cut off answers nothing, not even a reset) ends
	// the forward at once, as a failed connection.
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-p.died():
			cancel(fmt.Errorf("cluster: node %s missed %d heartbeats", p.name, m.opts.Misses))
		case <-fctx.Done():
		}
	}()
	r, err := m.do(fctx, p, http.MethodPost, "/cluster/v1/call", body)
	if err != nil {
		if cause := context.Cause(fctx); cause != nil && ctx.Err() == nil {
			return nil, cause
		}
		return nil, err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(io.LimitReader(r.Body, 4*DefaultMaxExchangeBytes))
	if err != nil {
		return nil, err
	}
	if r.StatusCode != http.StatusOK {
		var e struct {
			Error *api.Error `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error == nil {
			return nil, fmt.Errorf("cluster: node %s answered %s", p.name, r.Status)
		}
		e.Error.Status = r.StatusCode
		return nil, e.Error
	}
	var res supervisor.CallResult
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("cluster: node %s: %w", p.name, err)
	}
	return &res, nil
}

func (m *Mesh) do(ctx context.Context, p *peer, method, path string, body []byte) (*http.Response, error) {
	scheme := "http://"
	if m.opts.TLS != nil {
		scheme = "https://"
	}
	req, err := http.NewRequestWithContext(ctx, method, scheme+p.addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", m.auth)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return p.client.Do(req)
}

// peer returns the connection to a registered node, nil for an unknown
// one (not registered: its lease ended) or this node.
func (m *Mesh) peer(name string) *peer {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peers[name]
}

// PeerDead reports whether the heartbeat takes node for dead.
func (m *Mesh) PeerDead(name string) bool {
	p := m.peer(name)
	return p == nil || p.dead()
}

// followMembers keeps one connection and heartbeat per registered peer.
func (m *Mesh) followMembers(ctx context.Context) {
	defer m.wg.Done()
	for {
		changed := m.node.Changed()
		m.syncPeers(ctx)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

func (m *Mesh) syncPeers(ctx context.Context) {
	want := map[string]string{}
	for _, info := range m.node.Members() {
		if info.Name != m.node.Name() && info.Advertise != "" {
			want[info.Name] = info.Advertise
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, p := range m.peers {
		if addr, ok := want[name]; !ok || addr != p.addr {
			p.cancel()
			p.client.CloseIdleConnections()
			delete(m.peers, name)
		}
	}
	for name, addr := range want {
		if _, ok := m.peers[name]; ok {
			continue
		}
		pctx, cancel := context.WithCancel(ctx)
		p := &peer{name: name, addr: addr, client: m.peerClient(), cancel: cancel, deadCh: make(chan struct{})}
		m.peers[name] = p
		m.wg.Add(1)
		go m.heartbeat(pctx, p)
	}
}

// protocols is HTTP/2 alone: over TLS with MeshOptions.TLS, else h2c.
func (m *Mesh) protocols() *http.Protocols {
	var protos http.Protocols
	if m.opts.TLS != nil {
		protos.SetHTTP2(true)
	} else {
		protos.SetUnencryptedHTTP2(true)
	}
	return &protos
}

// peerClient is the client of one peer: HTTP/2 (see protocols), on one
// connection that all calls and pings share.
func (m *Mesh) peerClient() *http.Client {
	var tlsCfg *tls.Config
	if m.opts.TLS != nil {
		tlsCfg = m.opts.TLS.Clone()
	}
	return &http.Client{Transport: &http.Transport{
		Protocols:       m.protocols(),
		TLSClientConfig: tlsCfg,
		DialContext:     (&net.Dialer{Timeout: time.Second, KeepAlive: 15 * time.Second}).DialContext,
		// HTTP/2's own ping closes a connection that stopped answering,
		// so that the next call dials again instead of waiting on it.
		// Not as fast as the heartbeat: a connection closed under load
		// fails every call on it, and the heartbeat already ends the
		// forwards to a peer it takes for dead.
		HTTP2: &http.HTTP2Config{SendPingTimeout: time.Second, PingTimeout: time.Second},
	}}
}

// heartbeat pings p on its connection every Heartbeat, each ping on its
// own so that a slow answer does not hold back the next ping nor count as
// a miss, and takes p for dead when nothing has answered for as many ticks
// as its allowed silence (liveness: Misses heartbeats, more while its
// answers are slow). A tick that came late (this daemon starved of CPU)
// counts as one Heartbeat, not as the time it was away, since silence it
// did not wait for is no evidence against the peer. A refused connection (a dead
// daemon on a live kernel) makes p dead at once; any answer makes it
// alive again.
func (m *Mesh) heartbeat(ctx context.Context, p *peer) {
	defer m.wg.Done()
	hb := m.opts.Heartbeat
	maxInFlight := m.opts.Misses + 1
	answers := make(chan pingAnswer, maxInFlight)
	inFlight := 0
	live := liveness{every: hb, misses: m.opts.Misses}
	heard := func(a pingAnswer) {
		inFlight--
		switch {
		case a.err == nil:
			live.answered(a.rtt)
			if p.setDead(false) {
				m.log.Info("cluster: peer answers again", "peer", p.name)
			}
		case errors.Is(a.err, syscall.ECONNREFUSED):
			if p.setDead(true) {
				m.log.Warn("cluster: peer refuses the connection", "peer", p.name)
			}
		}
	}
	t := time.NewTicker(hb)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-answers:
			heard(a)
			continue
		case <-t.C:
		}
		// Answers that arrived while this daemon was away count first.
		for drained := false; !drained; {
			select {
			case a := <-answers:
				heard(a)
			default:
				drained = true
			}
		}
		if live.tick() && p.setDead(true) {
			m.log.Warn("cluster: peer missed its heartbeats", "peer", p.name, "silent", time.Duration(live.silent)*hb, "srtt", live.srtt, "rttvar", live.rttvar)
		}
		if inFlight < maxInFlight {
			inFlight++
			m.wg.Add(1)
			go func() {
				defer m.wg.Done()
				answers <- m.ping(ctx, p, 2*hb*time.Duration(maxSilentTicks*m.opts.Misses))
			}()
		}
	}
}

type pingAnswer struct {
	rtt time.Duration
	err error
}

// ping asks p whether it is there, within timeout.
func (m *Mesh) ping(ctx context.Context, p *peer, timeout time.Duration) pingAnswer {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	r, err := m.do(ctx, p, http.MethodGet, "/cluster/v1/ping", nil)
	if err != nil {
		return pingAnswer{err: err}
	}
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		return pingAnswer{err: fmt.Errorf("cluster: node %s answered a ping with %s", p.name, r.Status)}
	}
	return pingAnswer{rtt: time.Since(start)}
}
