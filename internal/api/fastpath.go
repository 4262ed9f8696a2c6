package api

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The socket's connections are served here first. A request for a single
// call (POST /v1/pools/{pool}/call, HTTP/1.1, a Content-Length of at most
// fastBodyMax, no Expect and no Transfer-Encoding) is parsed and answered
// on the connection's own goroutine; at the first request of any other
// kind the connection, with every byte already read, goes to net/http for
// the rest of its life. Calls are the API's hot path: net/http spends more
// on each (a header map, a request context, a goroutine reading ahead to
// notice a client leaving, a chunk writer) than the supervisor does, and
// this path answers the same calls with the same handler code in a
// fraction of it (see BenchmarkCallPath). What it gives up: a client that
// leaves mid-call is noticed when the answer is written, not before, so
// the call runs to its end (its agent would finish the attempt anyway).

// connReadBuf is the size of a connection's read buffer: a request's head
// must fit in it to take the fast path.
const connReadBuf = 8 << 10

// fastConns tracks the connections the fast path serves, for Shutdown.
type fastConns struct {
	mu      sync.Mutex
	conns   map[*fastConn]struct{}
	closing bool
	wg      sync.WaitGroup
}

type fastConn struct {
	nc   net.Conn
	busy bool // under fastConns.mu: a request is being served
}

// handoffListener gives net/http the connections the fast path passes on.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// handoff passes c to net/http; false once the server is closing.
func (l *handoffListener) handoff(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// replayConn is a connection whose first bytes were already read into br,
// with its peer's credentials, already read too.
type replayConn struct {
	net.Conn
	br     *bufio.Reader
	cred   PeerCred
	credOK bool
}

func (c *replayConn) Read(p []byte) (int, error) {
	if c.br.Buffered() > 0 {
		return c.br.Read(p)
	}
	return c.Conn.Read(p)
}

// serveConn serves one connection of the socket.
func (s *Server) serveConn(nc net.Conn) {
	defer s.fast.wg.Done()
	fc := &fastConn{nc: nc}
	if !s.fast.add(fc) {
		nc.Close()
		return
	}
	handed := false
	defer func() {
		// As net/http does: a panic ends the request and its connection,
		// never the daemon.
		if v := recover(); v != nil {
			s.log.Error("api: panic serving a call", "panic", v, "stack", string(debug.Stack()))
		}
		s.fast.remove(fc)
		if !handed {
			nc.Close()
		}
	}()
	cred, credOK := peerCred(nc)
	// Authorized once: the peer's credentials are those it had when it
	// connected. A peer that fails goes to net/http, which says why.
	authorized := credOK && s.authorize(cred) == nil
	ctx := context.Background()
	if credOK {
		ctx = context.WithValue(ctx, peerKey{}, cred)
	}
	br := bufio.NewReaderSize(nc, connReadBuf)
	w := &bufferedResponse{}
	var out []byte // the answer's bytes, kept for the next
	// A request that does not come at once must still come soon: the
	// first wait for more of it starts the clock, as net/http's
	// ReadHeaderTimeout does (an idle connection has none).
	deadline := false
	wait := func() {
		if !deadline {
			nc.SetReadDeadline(time.Now().Add(s.http.ReadHeaderTimeout))
			deadline = true
		}
	}
	for {
		if _, err := br.Peek(1); err != nil {
			return // the client closed the connection, or Shutdown did
		}
		if !s.fast.setBusy(fc, true) {
			return
		}
		req, ok, err := parseCallHead(br, wait)
		if err != nil {
			return // the client left, or stalled past the deadline, mid-head
		}
		if !ok || !authorized {
			if deadline {
				nc.SetReadDeadline(time.Time{}) // net/http sets its own
			}
			handed = s.handoff.handoff(&replayConn{Conn: nc, br: br, cred: cred, credOK: credOK})
			return
		}
		body, err := readBody(br, req, wait)
		if deadline {
			nc.SetReadDeadline(time.Time{})
			deadline = false
		}
		if err != nil {
			return
		}
		var served bool
		if out, served = s.serveFastCall(ctx, nc, req, body, w, out[:0]); !served || req.close {
			return
		}
		if !s.fast.setBusy(fc, false) {
			return
		}
	}
}

// readBody consumes the head parseCallHead took and reads the body after
// it; wait is called before blocking for bytes that have not come yet.
func readBody(br *bufio.Reader, req callHead, wait func()) ([]byte, error) {
	if br.Buffered() < req.headLen+req.bodyLen {
		wait()
	}
	br.Discard(req.headLen)
	body := make([]byte, req.bodyLen)
	_, err := io.ReadFull(br, body)
	return body, err
}

// serveFastCall answers a call whose head parseCallHead took (out is a
// buffer for the answer's bytes, returned for reuse) and reports whether
// the connection can serve another request.
func (s *Server) serveFastCall(ctx context.Context, nc net.Conn, req callHead, body []byte, w *bufferedResponse, out []byte) ([]byte, bool) {
	w.reset()
	s.callBody(ctx, w, req.pool, body)
	out = w.appendTo(out, req.close)
	_, err := nc.Write(out)
	if cap(out) > 64<<10 {
		out = nil // one large answer: do not keep its buffer
	}
	return out, err == nil
}

// callBody answers a call's body, as the call route does.
func (s *Server) callBody(ctx context.Context, w http.ResponseWriter, pool string, body []byte) {
	call, ok := decodeCallFast(body, false)
	if !ok {
		r := &http.Request{Method: http.MethodPost, ContentLength: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body)), Header: http.Header{}}
		if call.CallRequest, ok = decodeCallBody(w, r); !ok {
			return
		}
	}
	s.serveCall(ctx, w, pool, call.CallRequest)
}

func (f *fastConns) add(fc *fastConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return false
	}
	if f.conns == nil {
		f.conns = make(map[*fastConn]struct{})
	}
	f.conns[fc] = struct{}{}
	return true
}

func (f *fastConns) remove(fc *fastConn) {
	f.mu.Lock()
	delete(f.conns, fc)
	f.mu.Unlock()
}

// setBusy marks fc busy or idle; false once the server is closing.
func (f *fastConns) setBusy(fc *fastConn, busy bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	fc.busy = busy
	return !f.closing
}

// close stops new connections and closes the idle ones; busy ones close
// after their request.
func (f *fastConns) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closing = true
	for fc := range f.conns {
		if !fc.busy {
			fc.nc.Close()
		}
	}
}

// wait waits for every connection the fast path serves to close.
func (f *fastConns) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		f.mu.Lock()
		for fc := range f.conns {
			fc.nc.Close()
		}
		f.mu.Unlock()
		return ctx.Err()
	}
}

// callHead is what the fast path needs of a call's request head.
type callHead struct {
	pool    string
	headLen int  // bytes up to and including the blank line
	bodyLen int  // Content-Length
	close   bool // Connection: close
}

var (
	callPrefix = []byte("POST /v1/pools/")
	callSuffix = []byte("/call HTTP/1.1\r\n")
	headEnd    = []byte("\r\n\r\n")
)

// parseCallHead reads ahead, without consuming anything, until br holds a
// whole request head, and parses it if it is a call the fast path serves.
// It reports false for any other request, a head larger than br's buffer
// or a read error: net/http then reads the same bytes and answers.
func parseCallHead(br *bufio.Reader, wait func()) (h callHead, ok bool, err error) {
	head, ok, err := peekHead(br, callPrefix, wait)
	if !ok {
		return h, false, err
	}
	h.headLen = len(head)
	head = head[:len(head)-2] // each line with its CRLF
	i := bytes.Index(head, crlf)
	line, rest := head[:i+2], head[i+2:] // the request line with its CRLF
	if len(line) < len(callPrefix)+len(callSuffix) || !bytes.HasPrefix(line, callPrefix) || !bytes.HasSuffix(line, callSuffix) {
		return h, false, nil
	}
	name := line[len(callPrefix) : len(line)-len(callSuffix)]
	if !plainPoolName(name) {
		return h, false, nil // escapes, a query, another route: net/http decodes and routes those
	}
	var host, length bool
	for len(rest) > 0 {
		var l []byte
		l, rest, _ = bytes.Cut(rest, crlf)
		k, v, found := bytes.Cut(l, []byte(":"))
		if !found || len(k) == 0 || bytes.ContainsAny(k, " \t") {
			return h, false, nil // obsolete line folding, or not a header: net/http answers 400
		}
		v = bytes.Trim(v, " \t")
		switch {
		case asciiEqualFold(k, "content-length"):
			n, err := strconv.Atoi(string(v))
			if length || err != nil || n < 0 || n > fastBodyMax || v[0] == '+' {
				return h, false, nil
			}
			h.bodyLen, length = n, true
		case asciiEqualFold(k, "connection"):
			switch {
			case asciiEqualFold(v, "close"):
				h.close = true
			case asciiEqualFold(v, "keep-alive"):
			default:
				return h, false, nil
			}
		case asciiEqualFold(k, "host"):
			if host || !plainHost(v) {
				return h, false, nil // net/http refuses a malformed or repeated Host
			}
			host = true
		case asciiEqualFold(k, "transfer-encoding"), asciiEqualFold(k, "expect"), asciiEqualFold(k, "upgrade"):
			return h, false, nil
		}
	}
	// HTTP/1.1 requires Host; net/http answers 400 without it. A body
	// without its length is net/http's to read.
	if !host || !length {
		return h, false, nil
	}
	h.pool = string(name)
	return h, true, nil
}

// peekHead waits until br holds a whole HTTP head, up to and including
// its blank line, and returns it without consuming anything. It gives up
// (ok false) as soon as the bytes do not start as prefix does, or when the
// head would not fit br's buffer. wait, if not nil, is called before each
// wait for more bytes.
func peekHead(br *bufio.Reader, prefix []byte, wait func()) (head []byte, ok bool, err error) {
	if _, err := br.Peek(1); err != nil {
		return nil, false, err
	}
	for {
		b, _ := br.Peek(br.Buffered())
		if n := min(len(b), len(prefix)); !bytes.Equal(b[:n], prefix[:n]) {
			return nil, false, nil
		}
		if i := bytes.Index(b, headEnd); i >= 0 {
			return b[:i+len(headEnd)], true, nil
		}
		if br.Buffered() == br.Size() {
			return nil, false, nil
		}
		if wait != nil {
			wait()
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return nil, false, err
		}
	}
}

// plainHost reports whether a Host header's value is one that net/http
// accepts as it is: printable ASCII, no spaces.
func plainHost(v []byte) bool {
	for _, c := range v {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// plainPoolName reports whether a path segment is a pool name as it is,
// with nothing to unescape.
func plainPoolName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return string(b) != "." && string(b) != ".."
}

func asciiEqualFold[T ~[]byte | ~string](b T, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// bufferedResponse is the http.ResponseWriter of the fast path: it keeps
// the answer, which is then written whole with its Content-Length.
type bufferedResponse struct {
	header http.Header
	status int
	body   []byte
}

func (w *bufferedResponse) reset() {
	clear(w.header)
	w.status = 0
	if cap(w.body) > 64<<10 {
		w.body = nil
	}
	w.body = w.body[:0]
}

func (w *bufferedResponse) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

func (w *bufferedResponse) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *bufferedResponse) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, p...)
	return len(p), nil
}

// appendTo appends the whole HTTP/1.1 answer.
func (w *bufferedResponse) appendTo(b []byte, close bool) []byte {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\nContent-Type: "...)
	ct := "application/json"
	if v := w.header["Content-Type"]; len(v) > 0 {
		ct = v[0]
	}
	b = append(b, ct...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(w.body)), 10)
	b = append(b, "\r\nDate: "...)
	b = appendDate(b)
	if close {
		b = append(b, "\r\nConnection: close"...)
	}
	b = append(b, "\r\n\r\n"...)
	return append(b, w.body...)
}

// dateCache holds the Date header's value for the current second.
var dateCache atomic.Pointer[dateValue]

type dateValue struct {
	unix int64
	text []byte
}

func appendDate(b []byte) []byte {
	now := time.Now()
	d := dateCache.Load()
	if d == nil || d.unix != now.Unix() {
		d = &dateValue{unix: now.Unix(), text: now.UTC().AppendFormat(nil, http.TimeFormat)}
		dateCache.Store(d)
	}
	return append(b, d.text...)
}
