package mcprelay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Doer sends an HTTP request: an *http.Client, or the daemon's api.Client,
// which dials its unix socket.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Options configure [Run].
type Options struct {
	Client Doer
	// URL is the MCP endpoint, e.g. "http://resilienced/v1/pools/ev/mcp".
	URL string
	In  io.Reader // the host's messages, one a line
	Out io.Writer // the answers, one a line
	// Log gets what the host's user should know: a daemon out of reach,
	// a session replaced. Default slog.Default().
	Log *slog.Logger
	// MaxLine bounds one message either way (default 8 MiB): a longer
	// line from the host is answered with a JSON-RPC error and skipped.
	MaxLine int
}

// DefaultMaxLine is Options.MaxLine's default, the daemon API's body bound.
const DefaultMaxLine = 8 << 20

// Streamable HTTP's headers (MCP 2025-06-18 and later).
const (
	headerSession  = "Mcp-Session-Id"
	headerProtocol = "Mcp-Protocol-Version"
	headerLastID   = "Last-Event-ID"
)

// JSON-RPC error codes the relay answers with itself.
const (
	codeParse          = -32700
	codeInvalidRequest = -32600
	codeInternal       = -32603
)

// Bounds of the GET stream's reconnection delay.
const (
	streamRetryMin = 100 * time.Millisecond
	streamRetryMax = 5 * time.Second
)

// deleteTimeout bounds the DELETE of the session at the end.
const deleteTimeout = 2 * time.Second

// ErrLineTooLong: a line from the host over Options.MaxLine.
var ErrLineTooLong = errors.New("mcprelay: message too long")

// Run relays until o.In ends, then waits for the answers still due, deletes
// the session and returns nil; or until ctx ends, abandoning them. It
// returns an error only when reading o.In fails.
func Run(ctx context.Context, o Options) error {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.MaxLine <= 0 {
		o.MaxLine = DefaultMaxLine
	}
	r := &relay{o: o, ctx: ctx}
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() { readErr <- readLines(o.In, o.MaxLine, lines, ctx.Done()) }()
	var err error
loop:
	for {
		select {
		case line := <-lines:
			r.handle(line)
		case err = <-readErr:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	if errors.Is(err, ErrLineTooLong) {
		err = nil // said to the host; the stream ended after it
	}
	r.calls.Wait() // a canceled ctx has ended the calls' requests
	r.close()
	return err
}

// readLines sends each line of in (without its end) to lines until in
// ends (nil) or fails; a line over max is reported as ErrLineTooLong in
// its place, once per line.
func readLines(in io.Reader, max int, lines chan<- []byte, done <-chan struct{}) error {
	br := bufio.NewReaderSize(in, 64<<10)
	for {
		line, err := readLine(br, max)
		if len(bytes.TrimSpace(line)) > 0 || errors.Is(err, ErrLineTooLong) {
			if errors.Is(err, ErrLineTooLong) {
				line = nil // handle answers a nil line as too long
			}
			select {
			case lines <- line:
			case <-done:
				return nil
			}
		}
		switch {
		case err == io.EOF:
			return nil
		case err != nil && !errors.Is(err, ErrLineTooLong):
			return fmt.Errorf("mcprelay: reading the host's messages: %w", err)
		}
	}
}

// readLine reads one line of at most max bytes; a longer one is skipped to
// its end and reported as ErrLineTooLong.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > max+1 {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil && err != io.EOF {
				return nil, err
			}
			return nil, ErrLineTooLong
		}
		line = append(line, chunk...)
		if !errors.Is(err, bufio.ErrBufferFull) {
			return bytes.TrimRight(line, "\r\n"), err
		}
	}
}

type relay struct {
	o     Options
	ctx   context.Context
	calls sync.WaitGroup // requests at work
	outMu sync.Mutex     // one message at a time on o.Out
	renew sync.Mutex     // one new session at a time

	mu          sync.Mutex
	session     string // Mcp-Session-Id; "" before initialize, or for a sessionless server
	version     string // the negotiated protocol version
	gen         int    // bumped by every new session
	init        []byte // the host's initialize, replayed for a new session
	initialized []byte // and its notifications/initialized
	stopStream  context.CancelFunc
	streams     sync.WaitGroup
	closed      bool            // close began: no stream starts
	cancelled   map[string]bool // ids of requests the host cancelled
	unreachable bool            // the last request did not reach the daemon
}

// envelope is what the relay reads of a message.
type envelope struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params *struct {
		RequestID json.RawMessage `json:"requestId"` // notifications/cancelled
	} `json:"params"`
	Result *struct {
		ProtocolVersion string `json:"protocolVersion"`
	} `json:"result"`
}

func (e *envelope) isRequest() bool {
	return e.Method != "" && len(e.ID) > 0 && string(e.ID) != "null"
}

// handle forwards one message of the host's. Requests are answered
// concurrently; notifications and responses are sent in order, before the
// next line is read, so that notifications/initialized reaches the daemon
// before the requests that follow it.
func (r *relay) handle(line []byte) {
	if line == nil {
		r.replyError(nil, codeInvalidRequest, fmt.Sprintf("message over %d bytes: not sent", r.o.MaxLine))
		return
	}
	var m envelope
	if bytes.HasPrefix(bytes.TrimSpace(line), []byte("[")) {
		// A batch (2025-03-26): sent as is, answered as is.
		r.calls.Add(1)
		go func() { defer r.calls.Done(); r.forward(line, nil) }()
		return
	}
	if err := json.Unmarshal(line, &m); err != nil {
		r.replyError(nil, codeParse, "not a JSON-RPC message: "+err.Error())
		return
	}
	switch {
	case m.Method == "initialize" && m.isRequest():
		r.initialize(line, m.ID)
	case m.isRequest():
		r.calls.Add(1)
		go func() { defer r.calls.Done(); r.forward(line, m.ID) }()
	default:
		r.mu.Lock()
		switch {
		case m.Method == "notifications/initialized":
			r.initialized = line
		case m.Method == "notifications/cancelled" && m.Params != nil && len(m.Params.RequestID) > 0:
			// The server answers a cancelled request with nothing, and
			// the host wants nothing: no error for the missing reply.
			if r.cancelled == nil {
				r.cancelled = map[string]bool{}
			}
			r.cancelled[string(m.Params.RequestID)] = true
		}
		r.mu.Unlock()
		r.forward(line, nil)
	}
}

// initialize opens a session with the host's initialize, and remembers it
// to replay when the daemon loses the session.
func (r *relay) initialize(line, id json.RawMessage) {
	r.renew.Lock()
	defer r.renew.Unlock()
	r.mu.Lock()
	r.init, r.initialized = line, nil
	old, oldVersion := r.session, r.version
	r.mu.Unlock()
	// The session is current before the host reads the reply, and sends
	// what follows it.
	if err := r.open(r.setSession, r.write); err != nil {
		r.replyError(id, codeInternal, err.Error())
		return
	}
	r.deleteSession(old, oldVersion) // the host began again: its old session is done
}

// open sends the remembered initialize without a session; opened gets the
// session it opens (its id and protocol version), then deliver each
// message of the answer.
func (r *relay) open(opened func(session, version string), deliver func([]byte)) error {
	r.mu.Lock()
	init := r.init
	r.mu.Unlock()
	resp, err := r.send(r.ctx, http.MethodPost, init, "", "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return statusError(resp)
	}
	var set bool
	_, err = r.messages(resp, func(msg []byte, m *envelope) {
		if !set && m.Method == "" && m.Result != nil {
			set = true
			opened(resp.Header.Get(headerSession), m.Result.ProtocolVersion)
		}
		deliver(msg)
	})
	if !set {
		if err == nil {
			err = errors.New("the daemon's answer to initialize has no result")
		}
		return err
	}
	return nil
}

// setSession makes session current: the stream of the previous one stops,
// one for this one starts.
func (r *relay) setSession(session, version string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopStream != nil {
		r.stopStream()
		r.stopStream = nil
	}
	r.session, r.version = session, version
	r.gen++
	if session == "" || r.closed {
		return
	}
	ctx, cancel := context.WithCancel(r.ctx)
	r.stopStream = cancel
	r.streams.Add(1)
	go func(gen int) {
		defer r.streams.Done()
		r.stream(ctx, gen, session, version)
	}(r.gen)
}

// renewSession opens a new session after the daemon answered 404 for the
// session of generation gen; nothing when another did it already.
func (r *relay) renewSession(gen int) error {
	r.renew.Lock()
	defer r.renew.Unlock()
	r.mu.Lock()
	current, init := r.gen, r.init
	r.mu.Unlock()
	if current != gen {
		return nil
	}
	if init == nil {
		return errors.New("the daemon does not know the session, and the host has not initialized one")
	}
	var session, version string
	opened := func(s, v string) { session, version = s, v }
	if err := r.open(opened, func([]byte) {}); err != nil { // the host had its answer long ago
		return fmt.Errorf("opening a new session: %w", err)
	}
	r.mu.Lock()
	initialized := r.initialized
	r.mu.Unlock()
	// Initialized before any request of the host's sees the new session.
	if initialized != nil {
		if resp, err := r.send(r.ctx, http.MethodPost, initialized, session, version); err == nil {
			drain(resp)
		}
	}
	r.setSession(session, version)
	r.o.Log.Warn("the daemon did not know the MCP session (it restarted, or the session idled out): opened a new one", "session", session)
	return nil
}

// forward sends one message and writes its answer. A request (id not nil)
// always gets a reply: the daemon's, or an error saying why there is none.
func (r *relay) forward(line, id json.RawMessage) {
	for renewed := false; ; renewed = true {
		r.mu.Lock()
		gen, session, version := r.gen, r.session, r.version
		r.mu.Unlock()
		resp, err := r.send(r.ctx, http.MethodPost, line, session, version)
		if err != nil {
			r.replyError(id, codeInternal, err.Error())
			return
		}
		if resp.StatusCode == http.StatusNotFound && session != "" && !renewed {
			drain(resp)
			if err := r.renewSession(gen); err != nil {
				r.replyError(id, codeInternal, err.Error())
				return
			}
			continue
		}
		r.answer(resp, id)
		return
	}
}

// answer writes the messages of resp, the answer to the message with id
// (nil: a notification, a response, a batch).
func (r *relay) answer(resp *http.Response, id json.RawMessage) {
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusAccepted || resp.StatusCode == http.StatusNoContent:
		return
	case resp.StatusCode != http.StatusOK:
		err := statusError(resp)
		if id == nil {
			r.o.Log.Warn("the daemon refused a message", "err", err)
		}
		r.replyError(id, codeInternal, err.Error())
		return
	}
	replied := false
	_, err := r.messages(resp, func(msg []byte, m *envelope) {
		if id != nil && m.Method == "" && bytes.Equal(m.ID, id) {
			replied = true
		}
		r.write(msg)
	})
	r.mu.Lock()
	cancelled := r.cancelled[string(id)]
	delete(r.cancelled, string(id))
	r.mu.Unlock()
	if id != nil && !replied && !cancelled {
		why := "the daemon's answer ended without the reply"
		if err != nil && r.ctx.Err() == nil {
			why += ": " + err.Error()
		}
		r.replyError(id, codeInternal, why)
	}
}

// messages calls fn with each JSON-RPC message of an answer, a JSON body
// or an SSE stream, compacted to one line; it returns the last SSE event
// id, and the error that ended the body early.
func (r *relay) messages(resp *http.Response, fn func(msg []byte, m *envelope)) (lastID string, err error) {
	one := func(data []byte) {
		var buf bytes.Buffer
		if json.Compact(&buf, data) != nil {
			r.o.Log.Warn("the daemon sent a message that is not JSON; dropped", "message", truncate(data, 200))
			return
		}
		var m envelope
		json.Unmarshal(buf.Bytes(), &m) // a batch leaves it empty
		fn(buf.Bytes(), &m)
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch ct {
	case "text/event-stream":
		return readSSE(resp.Body, r.o.MaxLine, func(id string, data []byte) {
			if id != "" {
				lastID = id
			}
			one(data)
		})
	case "application/json":
		b, err := io.ReadAll(io.LimitReader(resp.Body, int64(r.o.MaxLine)+1))
		if err != nil {
			return "", err
		}
		if len(b) > r.o.MaxLine {
			return "", fmt.Errorf("an answer over %d bytes", r.o.MaxLine)
		}
		if len(bytes.TrimSpace(b)) > 0 {
			one(b)
		}
		return "", nil
	}
	return "", fmt.Errorf("an answer of type %q, neither JSON nor an SSE stream", ct)
}

// readSSE calls fn with each event of an SSE stream (its id, its data
// lines joined) until the stream ends.
func readSSE(body io.Reader, max int, fn func(id string, data []byte)) (string, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 4<<10), max+64) // grows to max as a message needs
	var data bytes.Buffer
	var id, lastID string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if data.Len() > 0 {
				fn(id, data.Bytes())
				if id != "" {
					lastID = id
				}
			}
			data.Reset()
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "data":
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.WriteString(value)
		case "id":
			id = value
		}
	}
	return lastID, sc.Err()
}

// stream reads the session's GET stream, the server's own messages, while
// ctx lasts: reconnecting after a break (from the last event id), giving
// up when the server offers no stream (405), and opening a new session
// when the daemon lost this one (404).
func (r *relay) stream(ctx context.Context, gen int, session, version string) {
	delay := streamRetryMin
	lastID := ""
	for ctx.Err() == nil {
		resp, err := r.send(ctx, http.MethodGet, nil, session, version, headerLastID, lastID)
		switch {
		case err != nil:
		case resp.StatusCode == http.StatusOK:
			delay = streamRetryMin
			id, _ := r.messages(resp, func(msg []byte, _ *envelope) { r.write(msg) })
			if id != "" {
				lastID = id
			}
			resp.Body.Close()
			continue // the daemon closed it: open another
		case resp.StatusCode == http.StatusMethodNotAllowed:
			drain(resp)
			return
		case resp.StatusCode == http.StatusNotFound:
			drain(resp)
			if err := r.renewSession(gen); err != nil && ctx.Err() == nil {
				r.o.Log.Warn("the daemon lost the MCP session", "err", err)
			}
			return
		default:
			r.o.Log.Warn("the daemon refused the stream of its messages", "err", statusError(resp))
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, streamRetryMax)
	}
}

// send sends one request of the session; headers are name, value pairs
// (an empty value is not sent).
func (r *relay) send(ctx context.Context, method string, body []byte, session, version string, headers ...string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.o.URL, rd)
	if err != nil {
		return nil, err
	}
	h := req.Header
	if body != nil {
		h.Set("Content-Type", "application/json")
		h.Set("Accept", "application/json, text/event-stream")
	} else {
		h.Set("Accept", "text/event-stream")
	}
	headers = append(headers, headerSession, session, headerProtocol, version)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] != "" {
			h.Set(headers[i], headers[i+1])
		}
	}
	resp, err := r.o.Client.Do(req)
	r.reached(ctx, err)
	return resp, err
}

// reached says on the log when the daemon goes out of reach and when it
// answers again: once each, not per request.
func (r *relay) reached(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	r.mu.Lock()
	was := r.unreachable
	r.unreachable = err != nil
	r.mu.Unlock()
	switch {
	case err != nil && !was:
		r.o.Log.Error("cannot reach the daemon", "err", err)
	case err == nil && was:
		r.o.Log.Info("the daemon answers again")
	}
}

// close ends the session: its stream stops, and the daemon forgets it.
func (r *relay) close() {
	r.mu.Lock()
	r.closed = true
	if r.stopStream != nil {
		r.stopStream()
	}
	r.mu.Unlock()
	r.streams.Wait()
	r.mu.Lock()
	session, version := r.session, r.version
	r.mu.Unlock()
	r.deleteSession(session, version)
}

// deleteSession tells the daemon to forget a session (DELETE).
func (r *relay) deleteSession(session, version string) {
	if session == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), deleteTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, r.o.URL, nil)
	if err != nil {
		return
	}
	req.Header.Set(headerSession, session)
	req.Header.Set(headerProtocol, version)
	if resp, err := r.o.Client.Do(req); err == nil {
		drain(resp)
	}
}

// write writes one message, a line, to the host.
func (r *relay) write(msg []byte) {
	r.outMu.Lock()
	defer r.outMu.Unlock()
	r.o.Out.Write(append(msg[:len(msg):len(msg)], '\n'))
}

// replyError answers the request id (nil: none can be named, JSON null)
// with a JSON-RPC error; a nil id of a notification is only logged.
func (r *relay) replyError(id json.RawMessage, code int, message string) {
	if id == nil && code == codeInternal {
		r.o.Log.Warn("a message was not delivered", "err", message)
		return
	}
	if id == nil {
		id = json.RawMessage("null")
	}
	msg, _ := json.Marshal(errorReply{JSONRPC: "2.0", ID: id, Error: rpcError{code, message}})
	r.write(msg)
}

type errorReply struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   rpcError        `json:"error"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// statusError describes an answer that is not 2xx, with its body's start:
// the daemon's reason (a peer without permission, an unknown pool).
func statusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	var e struct {
		Error struct{ Message string } `json:"error"`
	}
	text := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		text = e.Error.Message // the API's own errors
	}
	return fmt.Errorf("the daemon answered %s: %s", resp.Status, truncate([]byte(text), 300))
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// drain reads what is left of a small answer and closes it, so that its
// connection is kept.
func drain(resp *http.Response) {
	io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
}
