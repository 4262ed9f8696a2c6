package mcp

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/resilienced/resilienced/internal/agent"
)

// Call is one call on a pool, as the front door makes it.
type Call struct {
	Pool string
	// Session is the daemon session ("" for none): "mcp-" and the
	// client's Mcp-Session-Id.
	Session string
	Input   json.RawMessage
	// Progress, when the client asked for progress (a progressToken),
	// takes the call's progress to the client under its token.
	Progress func(agent.ProgressReport)
}

// Pools is what the front door needs of the daemon.
type Pools interface {
	// List returns the pools to serve, with their tools.
	List() []Pool
	// Call runs one call through the daemon's call path (contract,
	// retries, sessions) and returns the validated output.
	Call(ctx context.Context, c Call) (json.RawMessage, error)
}

// Options configure a [Server].
type Options struct {
	Pools Pools
	// Path is the aggregate endpoint (default "/mcp").
	Path string
	// Tokens, when not empty, are the bearer tokens a client must present.
	Tokens []string
	// MaxInFlight bounds the requests (and SSE streams) served at once;
	// more get 503 (default 1024).
	MaxInFlight int
	// MaxBodyBytes bounds a request body (default 4 MiB, the SDK's).
	MaxBodyBytes int64
	// SessionTimeout closes a session idle this long (default 30 min).
	SessionTimeout time.Duration
	Version        string
	Logger         *slog.Logger
	// Observer, when set, takes the OpenTelemetry MCP measurements.
	Observer Observer
}

// Server is the MCP front door, an http.Handler.
type Server struct {
	opts     Options
	inflight chan struct{}
	log      *slog.Logger
	sdkLog   *slog.Logger

	mu        sync.Mutex
	endpoints map[string]*endpoint // "" the aggregate, else a pool's
	hs        *http.Server
}

// resyncEvery bounds how often an endpoint compares its tools with the
// pools' (a reload, a server that shook hands since); a new session always
// does.
const resyncEvery = time.Second

// New returns a front door over opts.Pools.
func New(opts Options) *Server {
	if opts.Path == "" {
		opts.Path = "/mcp"
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 1024
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = sdk.DefaultMaxRequestBodyBytes
	}
	if opts.SessionTimeout <= 0 {
		opts.SessionTimeout = 30 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Server{
		opts:     opts,
		inflight: make(chan struct{}, opts.MaxInFlight),
		log:      opts.Logger.With("component", "mcp"),
		// The SDK logs every session's connection at info: two lines
		// per client, which would drown the daemon's own log.
		sdkLog:    slog.New(minLevel{opts.Logger.Handler(), slog.LevelWarn}).With("component", "mcp"),
		endpoints: map[string]*endpoint{},
	}
}

// minLevel drops records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}
func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}
func (h minLevel) WithGroup(g string) slog.Handler { return minLevel{h.Handler.WithGroup(g), h.min} }

// endpoint is one MCP server: the aggregate, or one pool's.
type endpoint struct {
	s       *Server
	pool    string // "" for the aggregate
	srv     *sdk.Server
	handler *sdk.StreamableHTTPHandler // the session era (up to 2025-11-25)
	// stateless serves the 2026-07-28 revision (server/discover,
	// per-request _meta, no session): the SDK's stateful handler refuses
	// it, its stateless one serves nothing else.
	stateless *sdk.StreamableHTTPHandler

	mu     sync.Mutex
	tools  map[string]exposed
	print  string
	synced time.Time
}

func (s *Server) endpoint(pool string) *endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ep, ok := s.endpoints[pool]; ok {
		return ep
	}
	name := "resilienced"
	if pool != "" {
		name += "/" + pool
	}
	ep := &endpoint{s: s, pool: pool, tools: map[string]exposed{}}
	ep.srv = sdk.NewServer(&sdk.Implementation{Name: name, Version: s.opts.Version}, &sdk.ServerOptions{
		Logger: s.sdkLog,
		// Only tools: no logging capability the daemon would not honour.
		Capabilities: &sdk.ServerCapabilities{Tools: &sdk.ToolCapabilities{ListChanged: true}},
	})
	ep.srv.AddReceivingMiddleware(ep.observe, checkArguments)
	serve := func(stateless bool) *sdk.StreamableHTTPHandler {
		return sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server {
			ep.sync(true)
			return ep.srv
		}, &sdk.StreamableHTTPOptions{
			Logger:              s.sdkLog,
			SessionTimeout:      s.opts.SessionTimeout,
			MaxRequestBodyBytes: s.opts.MaxBodyBytes,
			Stateless:           stateless,
			// Stateless-era requests (2026-07-28) end with their POST: a
			// client that goes away cancels its call.
			PropagateRequestCancellation: true,
		})
	}
	ep.handler = serve(false)
	ep.stateless = serve(true)
	s.endpoints[pool] = ep
	return ep
}

// sync makes the endpoint's tools the pools' (now, or at most every
// resyncEvery unless force).
func (ep *endpoint) sync(force bool) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if !force && time.Since(ep.synced) < resyncEvery {
		return
	}
	ep.synced = time.Now()
	pools := ep.s.opts.Pools.List()
	if ep.pool != "" {
		pools = filterPool(pools, ep.pool)
	}
	ts := toolsOf(pools)
	fp := fingerprint(ts)
	if fp == ep.print {
		return
	}
	ep.print = fp
	want := map[string]exposed{}
	for _, t := range ts {
		want[t.name] = t
	}
	var gone []string
	for name := range ep.tools {
		if _, ok := want[name]; !ok {
			gone = append(gone, name)
		}
	}
	if len(gone) > 0 {
		ep.srv.RemoveTools(gone...)
	}
	for _, t := range ts {
		ep.srv.AddTool(t.def, ep.call(t.name))
	}
	ep.tools = want
}

func filterPool(pools []Pool, name string) []Pool {
	for _, p := range pools {
		if p.Name == name {
			return []Pool{p}
		}
	}
	return nil
}

func (ep *endpoint) lookup(name string) (exposed, bool) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	t, ok := ep.tools[name]
	return t, ok
}

// call is the handler of the tool the client knows as name; what it maps
// to is looked up at each call, so a reload's change applies at once.
func (ep *endpoint) call(name string) sdk.ToolHandler {
	return func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		t, ok := ep.lookup(name)
		if !ok {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "unknown tool " + name}
		}
		c := Call{Pool: t.pool, Input: t.input(req.Params.Arguments)}
		if req.Session != nil && req.Session.ID() != "" {
			c.Session = "mcp-" + req.Session.ID()
		}
		if tok := req.Params.GetProgressToken(); tok != nil && req.Session != nil {
			// The agent's progress, under the client's token. ctx ties the
			// notification to this request's stream. The client's
			// notifications/cancelled (or, stateless, its closed POST)
			// ends ctx, which cancels the call in the daemon.
			c.Progress = func(p agent.ProgressReport) {
				err := req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{ProgressToken: tok, Progress: p.Progress, Total: p.Total, Message: p.Message})
				if err != nil {
					ep.s.log.Debug("progress notification", "tool", name, "err", err)
				}
			}
		}
		out, err := ep.s.opts.Pools.Call(ctx, c)
		if err != nil {
			return ep.s.errorResult(ctx, name, err)
		}
		return outputResult(out), nil
	}
}

// outputResult is a validated output as a tool result: its text (a JSON
// string's text, else the JSON), and an object as structuredContent too.
func outputResult(out json.RawMessage) *sdk.CallToolResult {
	var s string
	if json.Unmarshal(out, &s) == nil {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: s}}}
	}
	r := &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: string(out)}}}
	if len(out) > 0 && out[0] == '{' {
		r.StructuredContent = out
	}
	return r
}

// errorResult maps a failed call onto MCP. The caller's bad arguments
// (a JSON-RPC -32602 from the server) stay a -32602 error; everything else
// is a tool error (isError) whose text the model can read and act on: the
// tool's own refusal, or the daemon's (retries exhausted, breaker open).
// A call the client gave up on is its context's error.
func (s *Server) errorResult(ctx context.Context, tool string, err error) (*sdk.CallToolResult, error) {
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var rpc *agent.RPCError
	if errors.As(err, &rpc) && rpc.Code == agent.CodeInvalidParams {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: rpc.Message}
	}
	text := err.Error()
	var te *agent.ToolError
	if errors.As(err, &te) && te.Text != "" {
		text = te.Text
	}
	s.log.DebugContext(ctx, "tool call failed", "tool", tool, "err", err)
	return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: text}}}, nil
}

// ServeHTTP serves the endpoints, after the edge checks: a foreign Origin
// (a browser page elsewhere) gets 403, a missing or wrong bearer token 401,
// a request beyond MaxInFlight 503.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !originAllowed(r.Header.Get("Origin")) {
		http.Error(w, "forbidden origin", http.StatusForbidden)
		return
	}
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="resilienced"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	select {
	case s.inflight <- struct{}{}:
		defer func() { <-s.inflight }()
	default:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many requests in flight", http.StatusServiceUnavailable)
		return
	}
	if v := r.Header.Get("MCP-Protocol-Version"); v != "" && !slices.Contains(protocolVersions, v) {
		// The SDK compares versions as strings: "latest" would pass for
		// a revision after 2026-07-28.
		http.Error(w, fmt.Sprintf("unsupported MCP-Protocol-Version %.40q (supported: %s)", v, strings.Join(protocolVersions, ", ")), http.StatusBadRequest)
		return
	}
	var ep *endpoint
	switch p := r.URL.Path; {
	case p == s.opts.Path:
		ep = s.endpoint("")
	case strings.HasPrefix(p, "/pools/") && strings.HasSuffix(p, "/mcp"):
		name := strings.TrimSuffix(strings.TrimPrefix(p, "/pools/"), "/mcp")
		if !s.known(name) {
			http.Error(w, fmt.Sprintf("%v: %q", ErrUnknownPool, name), http.StatusNotFound)
			return
		}
		ep = s.endpoint(name)
	default:
		http.NotFound(w, r)
		return
	}
	ep.sync(false)
	stateless, err := s.stateless(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	if stateless {
		ep.stateless.ServeHTTP(w, r)
		return
	}
	ep.handler.ServeHTTP(w, r)
}

// stateless reports whether r is served without a session: a request of
// the 2026-07-28 revision, or a session-era POST that carries no
// Mcp-Session-Id and is not an initialize (a client that dropped its
// session id, or never kept one). The SDK's stateful handler would open a
// session for it that no initialize ever readies; served statelessly, it
// is answered. Its body is read here to tell, within MaxBodyBytes.
func (s *Server) stateless(r *http.Request) (bool, error) {
	if statelessEra(r) {
		return true, nil
	}
	if r.Method != http.MethodPost || r.Header.Get("Mcp-Session-Id") != "" || r.Body == nil {
		return false, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, s.opts.MaxBodyBytes+1))
	r.Body.Close()
	if int64(len(body)) > s.opts.MaxBodyBytes {
		return false, fmt.Errorf("request body exceeds %d bytes", s.opts.MaxBodyBytes)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return false, nil // the handler reads the rest of the error
	}
	return !initializes(body), nil
}

// initializes reports whether a JSON-RPC message or batch holds an
// initialize request; what does not parse is left to the SDK to refuse.
func initializes(body []byte) bool {
	type msg struct {
		Method string `json:"method"`
	}
	var one msg
	if json.Unmarshal(body, &one) == nil {
		return one.Method == "initialize"
	}
	var batch []msg
	if json.Unmarshal(body, &batch) != nil {
		return true // not JSON-RPC: the stateful handler says so
	}
	for _, m := range batch {
		if m.Method == "initialize" {
			return true
		}
	}
	return false
}

// protocolVersions are the revisions the front door speaks: the SDK's.
var protocolVersions = sdk.SupportedProtocolVersions()

// statelessEra reports whether r speaks the 2026-07-28 revision, which
// requires its MCP-Protocol-Version header on every request (dates
// compare as strings).
func statelessEra(r *http.Request) bool {
	return r.Header.Get("MCP-Protocol-Version") >= "2026-07-28"
}

func (s *Server) known(pool string) bool {
	if pool == "" || strings.Contains(pool, "/") {
		return false
	}
	return len(filterPool(s.opts.Pools.List(), pool)) == 1
}

func (s *Server) authorized(r *http.Request) bool {
	if len(s.opts.Tokens) == 0 {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	match := 0
	for _, t := range s.opts.Tokens {
		match |= subtle.ConstantTimeCompare([]byte(got), []byte(t))
	}
	return match == 1
}

// originAllowed admits requests without an Origin (every non-browser
// client) and browser pages on this host (loopback); a page from anywhere
// else is the DNS-rebinding and cross-site attack the spec warns of.
func originAllowed(origin string) bool {
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// LoadTokens reads bearer tokens, one a line; blank lines and lines
// starting with # are skipped.
func LoadTokens(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTokens, err)
	}
	var ts []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			ts = append(ts, l)
		}
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("%w: %s holds no token", ErrTokens, path)
	}
	return ts, nil
}

// Serve serves the front door on ln until [Server.Shutdown].
func (s *Server) Serve(ln net.Listener) error {
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	s.mu.Lock()
	s.hs = hs
	s.mu.Unlock()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops serving: open SSE streams are closed, calls in flight
// are given until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	hs := s.hs
	s.mu.Unlock()
	if hs == nil {
		return nil
	}
	return hs.Shutdown(ctx)
}
