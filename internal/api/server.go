package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/resilienced/resilienced/internal/session"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 8 << 20

// Sessions is what the API reads of the session store.
type Sessions interface {
	Sessions(ctx context.Context, pool string) ([]session.SessionInfo, error)
	Context(ctx context.Context, pool, session string) ([]session.Exchange, error)
}

// Options configure a Server.
type Options struct {
	Supervisor *supervisor.Supervisor
	Sessions   Sessions // nil: session routes answer 503
	Version    string
	Node       string      // default: hostname
	Mode       func() Mode // the daemon's current mode
	// Config, if set, describes the running config in the status.
	Config func() ConfigStatus
	Logger *slog.Logger
	// Authorize decides whether a peer may use the API; default: root, the
	// daemon's own uid, or a member of the socket's group.
	Authorize func(cred PeerCred) error
	// Caller, when set, runs the calls instead of Supervisor.Call: in
	// cluster mode, the mesh that routes a session's call to its owner.
	Caller Caller
	// Journal, if set, answers for the events that the supervisor's
	// in-memory ring no longer holds: older ones, and an earlier daemon
	// instance's.
	Journal EventJournal
}

// Caller runs a call; *supervisor.Supervisor is one.
type Caller interface {
	Call(ctx context.Context, pool string, req supervisor.CallRequest) (*supervisor.CallResult, error)
}

// EventJournal is the durable history of events.
type EventJournal interface {
	// Events returns the journal's events at or after since, oldest first.
	Events(ctx context.Context, since time.Time) ([]supervisor.Event, error)
}

// Server serves the API.
type Server struct {
	opts Options
	mux  *http.ServeMux
	http *http.Server
	log  *slog.Logger
	sock *Socket

	mu       sync.Mutex
	shutdown bool // Shutdown was called; Serve returns at once
}

// NewServer returns a server with the core routes.
func NewServer(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Node == "" {
		opts.Node, _ = os.Hostname()
	}
	if opts.Mode == nil {
		opts.Mode = func() Mode { return Mode{Cgroup: "none"} }
	}
	s := &Server{opts: opts, mux: http.NewServeMux(), log: opts.Logger}
	s.routes()
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext:       s.connContext,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	return s
}

// Handle adds a route; the handler runs after the peer check.
func (s *Server) Handle(pattern string, h http.HandlerFunc) { s.mux.HandleFunc(pattern, h) }

// connContext reads a new connection's peer credentials (SO_PEERCRED),
// once, and decides then whether the peer may use the API, as tailscale's
// LocalAPI does: the credentials are those the peer had when it connected,
// and a kept-alive connection's requests cost neither a getsockopt nor a
// look at /proc each.
func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	cred, ok := peerCred(c)
	if !ok {
		return ctx
	}
	ctx = context.WithValue(ctx, peerKey{}, cred)
	return context.WithValue(ctx, authKey{}, connAuth{err: s.authorize(cred)})
}

// authKey carries a connection's connAuth in its requests' contexts.
type authKey struct{}

// connAuth is the verdict on a connection's peer, reached when it connected.
type connAuth struct{ err error }

// ServeHTTP checks the peer, then routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cred, ok := peerFrom(r.Context())
	if !ok {
		WriteError(w, &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: "cannot read the peer's credentials (SO_PEERCRED); the API is served on a unix socket only"})
		return
	}
	auth, ok := r.Context().Value(authKey{}).(connAuth)
	if !ok { // a request that did not come through Serve (a test's)
		auth.err = s.authorize(cred)
	}
	if err := auth.err; err != nil {
		// The body is not read: close the connection rather than wait for
		// its end, which a call stream's client sends only much later.
		w.Header().Set("Connection", "close")
		WriteError(w, &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: err.Error()})
		return
	}
	r.Body = &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, MaxBodyBytes), raw: r.Body}
	s.mux.ServeHTTP(w, r)
}

// limitedBody is a request body under MaxBodyBytes that keeps the body
// itself for the call stream, whose limit is per line.
type limitedBody struct {
	io.ReadCloser
	raw io.ReadCloser
}

// Serve serves on the socket with net/http until Shutdown, and returns
// nil then. A temporary accept error (out of file descriptors) is waited
// out and retried, as net/http does; any other ends Serve, wrapped.
func (s *Server) Serve(sock *Socket) error {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		sock.Close()
		return nil
	}
	s.sock = sock
	s.mu.Unlock()
	err := s.http.Serve(sock)
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("api: accepting connections on %s: %w", sock.Addr(), err)
}

// Shutdown stops accepting connections, closes idle ones and waits for
// requests in flight, or ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	s.mu.Unlock()
	return s.http.Shutdown(ctx) // closes the socket
}

// authorize says whether a peer may use the API.
func (s *Server) authorize(cred PeerCred) error {
	if s.opts.Authorize != nil {
		return s.opts.Authorize(cred)
	}
	return s.defaultAuthorize(cred)
}

func (s *Server) defaultAuthorize(c PeerCred) error {
	if c.UID == 0 || c.UID == uint32(os.Getuid()) {
		return nil
	}
	if s.sock != nil && s.sock.GID >= 0 && c.inGroup(uint32(s.sock.GID)) {
		return nil
	}
	name := strconv.Itoa(int(c.UID))
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	if s.sock != nil && s.sock.GID >= 0 {
		return fmt.Errorf("permission denied: user %s is neither root nor in group %q; add it with `usermod -aG %s %s` and log in again", name, s.sock.Group, s.sock.Group, name)
	}
	return fmt.Errorf("permission denied: user %s is not root nor the daemon's user; create group \"resilienced\" and add the user to it", name)
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /v1/version", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, VersionInfo{Version: s.opts.Version, Go: runtime.Version()})
	})
	s.mux.HandleFunc("GET /v1/status", s.status)
	s.mux.HandleFunc("GET /v1/agents", s.agents)
	s.mux.HandleFunc("GET /v1/logs/{target}", s.logs)
	s.mux.HandleFunc("POST /v1/pools/{pool}/call", s.call)
	s.mux.HandleFunc("POST /v1/pools/{pool}/call/stream", s.callStream)
	s.mux.HandleFunc("POST /v1/pools/{pool}/restart", s.restartPool)
	s.mux.HandleFunc("POST /v1/pools/{pool}/scale", s.scale)
	s.mux.HandleFunc("GET /v1/pools/{pool}/ring", s.ring)
	s.mux.HandleFunc("POST /v1/agents/{id}/restart", s.restartAgent)
	s.mux.HandleFunc("POST /v1/agents/{id}/drain", s.drain)
	s.mux.HandleFunc("GET /v1/events", s.events)
	s.mux.HandleFunc("GET /v1/sessions", s.sessions)
	s.mux.HandleFunc("GET /v1/sessions/{id}", s.sessionShow)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)})
	})
}

// Views serves the read-only views that the other nodes of a cluster ask
// for (resilientctl status, sessions and ring with --cluster): status,
// sessions, a pool's ring. It skips the peer check: its caller has
// authenticated otherwise (the cluster mesh checks the cluster token).
func (s *Server) Views() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/sessions", s.sessions)
	mux.HandleFunc("GET /v1/pools/{pool}/ring", s.ring)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("no such view: %s %s (status, sessions and a pool's ring are)", r.Method, r.URL.Path)})
	})
	return mux
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	agents, _ := s.opts.Supervisor.Agents("")
	if agents == nil {
		agents = []supervisor.AgentStatus{}
	}
	pools := s.opts.Supervisor.Status()
	if pools == nil {
		pools = []supervisor.PoolStatus{}
	}
	mode := s.opts.Mode()
	if mode.Notes == nil {
		mode.Notes = []string{}
	}
	st := Status{Node: s.opts.Node, Version: s.opts.Version, PID: os.Getpid(), Mode: mode, Pools: pools, Agents: agents}
	if s.opts.Config != nil {
		cs := s.opts.Config()
		st.Config = &cs
	}
	WriteJSON(w, http.StatusOK, st)
}

func (s *Server) agents(w http.ResponseWriter, r *http.Request) {
	as, err := s.opts.Supervisor.Agents(r.URL.Query().Get("pool"))
	if err != nil {
		WriteError(w, err)
		return
	}
	if as == nil {
		as = []supervisor.AgentStatus{}
	}
	WriteJSON(w, http.StatusOK, as)
}

func (s *Server) call(w http.ResponseWriter, r *http.Request) {
	// net/http bounds the wait for a request's head, not its body: a client
	// that stalls in the body would hold this goroutine, and Shutdown, for
	// good. The body gets the head's time too; the deadline is lifted
	// before the call runs, which may take longer, while net/http's read
	// ahead watches for the client leaving.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(s.http.ReadHeaderTimeout))
	req, ok := decodeCallBody(w, r)
	if !ok {
		// The deadline stays: net/http reads what is left of a refused
		// body before the next request, and a stalled one must not hold
		// the connection then either.
		return
	}
	rc.SetReadDeadline(time.Time{})
	s.serveCall(r.Context(), w, r.PathValue("pool"), req)
}

// serveCall runs a decoded call and writes its answer.
func (s *Server) serveCall(ctx context.Context, w http.ResponseWriter, pool string, req CallRequest) {
	timeout, err := callTimeout(req.Timeout)
	if err != nil {
		WriteError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := s.caller().Call(ctx, pool, supervisor.CallRequest{Input: req.Input, Session: req.Session, IdempotencyKey: req.Key})
	if err != nil {
		WriteError(w, err)
		return
	}
	writeCallResponse(w, res)
}

func (s *Server) caller() Caller {
	if s.opts.Caller != nil {
		return s.opts.Caller
	}
	return s.opts.Supervisor
}

// fastBodyMax is the largest call body read whole for decodeCallFast.
const fastBodyMax = 64 << 10

// decodeCallBody decodes a call's body as DecodeBody would, answering
// 400/413 itself. A body of known, modest length is read whole first, and
// decoded by decodeCallFast when it can be; anything else, errors
// included, goes the strict encoding/json way over the same bytes.
func decodeCallBody(w http.ResponseWriter, r *http.Request) (CallRequest, bool) {
	if n := r.ContentLength; n > 0 && n <= fastBodyMax {
		buf := make([]byte, n)
		m, err := io.ReadFull(r.Body, buf)
		if err == nil {
			if call, ok := decodeCallFast(buf, false); ok {
				return call.CallRequest, true
			}
		}
		r.Body = readCloser{io.MultiReader(bytes.NewReader(buf[:m]), r.Body), r.Body}
	}
	var req CallRequest
	ok := DecodeBody(w, r, &req)
	return req, ok
}

type readCloser struct {
	io.Reader
	io.Closer
}

// DefaultCallTimeout bounds a call that names no timeout.
const DefaultCallTimeout = 60 * time.Second

// callTimeout parses a call's timeout ("" is the default).
func callTimeout(s string) (time.Duration, error) {
	if s == "" {
		return DefaultCallTimeout, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: fmt.Sprintf("timeout: %q is not a positive duration (e.g. 5s)", s)}
	}
	return d, nil
}

// jsonContentType is the Content-Type header's value, shared by every
// answer (net/http only reads it).
var jsonContentType = []string{"application/json"}

// writeCallResponse writes a call's answer as WriteJSON would write a
// CallResponse, built by hand: the output is JSON checked by the contract,
// which encoding/json would validate and compact again. The body goes out
// with its Content-Length, never chunked.
func writeCallResponse(w http.ResponseWriter, res *supervisor.CallResult) {
	if !handWritable(res) {
		WriteJSON(w, http.StatusOK, callResponse(res))
		return
	}
	b := make([]byte, 0, 80+len(res.Output)+len(res.Agent))
	b = append(b, '{')
	b = appendCallFields(b, res)
	b = append(b, "}\n"...)
	writeBody(w, http.StatusOK, b)
}

func callResponse(res *supervisor.CallResult) CallResponse {
	return CallResponse{Output: res.Output, Agent: res.Agent, Attempts: res.Attempts, Cached: res.Cached, Seq: res.Seq, Violations: res.Violations}
}

// handWritable reports whether appendCallFields can write res: no
// violations to encode, an output on one line (encoding/json would compact
// it) and an agent name that needs no escaping.
func handWritable(res *supervisor.CallResult) bool {
	return len(res.Violations) == 0 && !bytes.ContainsAny(res.Output, "\r\n") && plainString(res.Agent)
}

// appendCallFields appends the fields of res's CallResponse, as
// encoding/json would write them, without braces; res is handWritable.
func appendCallFields(b []byte, res *supervisor.CallResult) []byte {
	b = append(b, `"output":`...)
	if len(res.Output) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, res.Output...)
	}
	if res.Agent != "" {
		b = append(b, `,"agent":"`...)
		b = append(b, res.Agent...)
		b = append(b, '"')
	}
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(res.Attempts), 10)
	if res.Cached {
		b = append(b, `,"cached":true`...)
	}
	if res.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, res.Seq, 10)
	}
	return b
}

// plainString reports whether s needs no escaping in JSON (as
// encoding/json escapes, HTML characters included).
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

func (s *Server) restartPool(w http.ResponseWriter, r *http.Request) {
	all := r.URL.Query().Get("all_at_once")
	if err := s.opts.Supervisor.RestartPool(r.Context(), r.PathValue("pool"), all == "1" || all == "true"); err != nil {
		WriteError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"restarted": r.PathValue("pool")})
}

func (s *Server) scale(w http.ResponseWriter, r *http.Request) {
	var req ScaleRequest
	if !DecodeBody(w, r, &req) {
		return
	}
	if err := s.opts.Supervisor.Scale(r.PathValue("pool"), req.Replicas, supervisor.ScaleOptions{Force: req.Force, AllowZero: req.AllowZero}); err != nil {
		WriteError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"pool": r.PathValue("pool"), "replicas": req.Replicas})
}

func (s *Server) ring(w http.ResponseWriter, r *http.Request) {
	p, err := s.opts.Supervisor.Pool(r.PathValue("pool"))
	if err != nil {
		WriteError(w, err)
		return
	}
	rg := p.Ring()
	info := RingInfo{Pool: p.Name(), Members: []RingMember{}, Imbalance: rg.Imbalance()}
	for _, m := range rg.Members() {
		info.Members = append(info.Members, RingMember{Agent: m.Name, State: string(m.State), Keys: m.Keys, Share: m.Share})
		info.Keys += m.Keys
	}
	WriteJSON(w, http.StatusOK, info)
}

func (s *Server) restartAgent(w http.ResponseWriter, r *http.Request) {
	if err := s.opts.Supervisor.RestartAgent(r.PathValue("id")); err != nil {
		WriteError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"restarted": r.PathValue("id")})
}

func (s *Server) drain(w http.ResponseWriter, r *http.Request) {
	if err := s.opts.Supervisor.Drain(r.PathValue("id"), "drained by operator"); err != nil {
		WriteError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"draining": r.PathValue("id")})
}

// events writes remembered events since ?since= (a duration back from now,
// or an RFC 3339 time), only those of ?pool=, ?agent= and ?kind= (kinds
// comma-separated) when given, the last ?tail=N of them, then with
// ?follow=1 streams new ones that match until the client goes away. One
// JSON object per line.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since time.Time
	if v := q.Get("since"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			since = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			since = t
		} else {
			WriteError(w, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: fmt.Sprintf("since: %q is neither a duration (5m) nor an RFC 3339 time", v)})
			return
		}
	}
	tail, ok := tailParam(w, r, "events")
	if !ok {
		return
	}
	match := EventFilter{Pool: q.Get("pool"), Agent: q.Get("agent")}
	if v := q.Get("kind"); v != "" {
		match.Kinds = strings.Split(v, ",")
	}
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	var sub <-chan supervisor.Event
	if follow {
		ch, cancel := s.opts.Supervisor.Subscribe(1024)
		defer cancel()
		sub = ch
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	var backlog []supervisor.Event
	for _, ev := range s.backlog(r.Context(), since) {
		if match.Matches(ev) {
			backlog = append(backlog, ev)
		}
	}
	if tail > 0 && len(backlog) > tail {
		backlog = backlog[len(backlog)-tail:]
	}
	var last time.Time
	for _, ev := range backlog {
		enc.Encode(ev)
		last = ev.Time
	}
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	if !follow {
		return
	}
	for {
		select {
		case ev := <-sub:
			if !last.IsZero() && !ev.Time.After(last) || !match.Matches(ev) {
				continue // already sent from the backlog, or not asked for
			}
			if err := enc.Encode(ev); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		case <-r.Context().Done():
			return
		}
	}
}

// backlog is the events at or after since: the supervisor's ring, and
// before its first one, the journal's. The ring holds every event from its
// oldest on, so the journal is read only for what came before it.
func (s *Server) backlog(ctx context.Context, since time.Time) []supervisor.Event {
	recent := s.opts.Supervisor.Events(since)
	if s.opts.Journal == nil {
		return recent
	}
	old, err := s.opts.Journal.Events(ctx, since)
	if err != nil {
		s.log.Warn("reading the event journal; answering from memory", "err", err)
		return recent
	}
	if len(recent) > 0 {
		first := recent[0].Time
		n, _ := slices.BinarySearchFunc(old, first, func(ev supervisor.Event, t time.Time) int { return ev.Time.Compare(t) })
		old = old[:n]
	}
	return append(old, recent...)
}

// logs answers the last stderr lines of an agent or of a pool's agents
// (?tail=N: the last N).
// tailParam reads ?tail=N (0 when absent), answering 400 for anything but
// a count of what.
func tailParam(w http.ResponseWriter, r *http.Request, what string) (int, bool) {
	v := r.URL.Query().Get("tail")
	if v == "" {
		return 0, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		WriteError(w, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: fmt.Sprintf("tail: %q is not a count of %s", v, what)})
		return 0, false
	}
	return n, true
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	n, ok := tailParam(w, r, "lines")
	if !ok {
		return
	}
	lines, err := s.opts.Supervisor.Logs(r.PathValue("target"), n)
	if err != nil {
		WriteError(w, err)
		return
	}
	if lines == nil {
		lines = []supervisor.LogLine{}
	}
	WriteJSON(w, http.StatusOK, lines)
}

func (s *Server) sessions(w http.ResponseWriter, r *http.Request) {
	if s.opts.Sessions == nil {
		WriteError(w, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "the daemon runs without a session store"})
		return
	}
	infos, err := s.opts.Sessions.Sessions(r.Context(), r.URL.Query().Get("pool"))
	if err != nil {
		WriteError(w, err)
		return
	}
	out := make([]SessionInfo, 0, len(infos))
	for _, in := range infos {
		out = append(out, SessionInfo{Pool: in.Pool, ID: in.ID, Entries: in.Entries, Bytes: in.Bytes, Updated: in.Updated})
	}
	WriteJSON(w, http.StatusOK, out)
}

func (s *Server) sessionShow(w http.ResponseWriter, r *http.Request) {
	if s.opts.Sessions == nil {
		WriteError(w, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "the daemon runs without a session store"})
		return
	}
	id := r.PathValue("id")
	pool := r.URL.Query().Get("pool")
	if pool == "" {
		// A session id is usually unique across pools: find it.
		infos, err := s.opts.Sessions.Sessions(r.Context(), "")
		if err != nil {
			WriteError(w, err)
			return
		}
		var pools []string
		for _, in := range infos {
			if in.ID == id {
				pools = append(pools, in.Pool)
			}
		}
		switch len(pools) {
		case 0:
			WriteError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf("no session %q (list them with `resilientctl sessions`)", id)})
			return
		case 1:
			pool = pools[0]
		default:
			WriteError(w, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: fmt.Sprintf("session %q exists in pools %s: say which with --pool", id, strings.Join(pools, ", "))})
			return
		}
	}
	exs, err := s.opts.Sessions.Context(r.Context(), pool, id)
	if err != nil {
		WriteError(w, err)
		return
	}
	d := SessionDetail{Pool: pool, ID: id, Context: make([]Exchange, 0, len(exs))}
	for _, ex := range exs {
		d.Context = append(d.Context, Exchange{Seq: ex.Seq, Time: ex.Time, Agent: ex.Agent, Input: ex.Input, Output: ex.Output})
	}
	WriteJSON(w, http.StatusOK, d)
}

// DecodeBody decodes a JSON body strictly, answering 400/413 itself.
func DecodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			WriteError(w, &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Message: fmt.Sprintf("request body over %d bytes", tooBig.Limit)})
			return false
		}
		WriteError(w, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "request body: " + jsonErrorText(err)})
		return false
	}
	if dec.More() {
		WriteError(w, &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "request body: more than one JSON value"})
		return false
	}
	return true
}

func jsonErrorText(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q: want %s, got %s", typ.Field, typ.Type, typ.Value)
	case errors.Is(err, io.EOF):
		return "empty body; want a JSON object"
	}
	return err.Error()
}

// WriteJSON writes v as the response, with its Content-Length: an answer
// is never chunked, whatever its size.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		WriteError(w, err)
		return
	}
	writeBody(w, status, append(b, '\n'))
}

// WriteError writes err as a JSON error with the status its kind calls for,
// and a Retry-After header when err's chain says how long to wait (an
// error with a RetryAfter() time.Duration method, such as the breaker's).
func WriteError(w http.ResponseWriter, err error) {
	e := classify(err)
	b, _ := json.Marshal(map[string]*Error{"error": e})
	if v := retryAfter(err); v != "" {
		w.Header().Set("Retry-After", v)
	}
	writeBody(w, e.Status, append(b, '\n'))
}

// writeBody writes a JSON answer whole, with its length.
func writeBody(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	w.Write(b)
}

func classify(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	msg := err.Error()
	switch {
	case errors.Is(err, supervisor.ErrUnknownPool):
		return &Error{Status: http.StatusNotFound, Code: CodeUnknownPool, Message: msg}
	case errors.Is(err, supervisor.ErrUnknownAgent):
		return &Error{Status: http.StatusNotFound, Code: CodeUnknownAgent, Message: msg}
	case errors.Is(err, supervisor.ErrInvalidInput):
		return &Error{Status: http.StatusBadRequest, Code: CodeInvalidInput, Message: msg}
	case errors.Is(err, supervisor.ErrDependencyUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeDependencyUnavailable, Message: msg}
	case errors.Is(err, supervisor.ErrScaleRefused):
		return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: msg}
	case errors.Is(err, supervisor.ErrIdempotencyConflict):
		return &Error{Status: http.StatusConflict, Code: CodeIdempotencyConflict, Message: msg}
	case errors.Is(err, supervisor.ErrPoolFailed), errors.Is(err, supervisor.ErrPoolStopped):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodePoolFailed, Message: msg}
	case errors.Is(err, supervisor.ErrBreakerOpen):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeBreakerOpen, Message: msg}
	case errors.Is(err, supervisor.ErrRetriesExhausted):
		return &Error{Status: http.StatusBadGateway, Code: CodeCallFailed, Message: msg}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusGatewayTimeout, Code: CodeTimeout, Message: "timed out: " + msg}
	case errors.Is(err, context.Canceled):
		return &Error{Status: 499, Code: CodeTimeout, Message: "canceled: " + msg}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: msg}
}
