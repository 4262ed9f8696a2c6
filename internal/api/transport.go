package api

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Client transport defaults.
const (
	maxIdleConns    = 128
	idleConnTimeout = 90 * time.Second
)

// unixTransport is the client's HTTP/1.1 transport to the daemon's unix
// socket, with kept-alive connections. It does for this one peer what
// http.Transport does, with less: the calling goroutine writes the request
// and reads the answer itself, where http.Transport hands both to a
// connection's writer and reader goroutines. That is two goroutine
// switches, and their wake-ups, fewer per call: about a third of the
// client's CPU time per call (see BenchmarkCallPath).
//
// A connection the daemon has closed (a restart, Shutdown) fails the next
// write with EPIPE before a byte is sent, and the request is retried once on
// a new connection; no other failure is retried, so a call is never sent
// twice.
type unixTransport struct {
	socket string

	mu   sync.Mutex
	idle []*clientConn // the most recently used last
}

type clientConn struct {
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	cw     *countingWriter
	idleAt time.Time
}

// countingWriter counts the bytes that reached the socket, so that a failed
// request is known to be unsent.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// errUnsent marks a request that failed before any of it was written.
type errUnsent struct{ err error }

func (e *errUnsent) Error() string { return e.err.Error() }
func (e *errUnsent) Unwrap() error { return e.err }

// RoundTrip implements http.RoundTripper.
func (t *unixTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for retried := false; ; retried = true {
		if err := ctx.Err(); err != nil {
			closeBody(req)
			return nil, err
		}
		cc, reused, err := t.conn(ctx)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, err := t.exchange(ctx, cc, req.Method == http.MethodHead, !req.Close, func(w *bufio.Writer) error { return req.Write(w) }, nil) // closes req.Body
		if err == nil {
			resp.Request = req
			return resp, nil
		}
		var unsent *errUnsent
		if reused && !retried && errors.As(err, &unsent) && (req.Body == nil || req.Body == http.NoBody || req.GetBody != nil) {
			// A kept-alive connection the daemon had closed: nothing was
			// sent, so sending again on a new one cannot run anything twice.
			r2 := req.Clone(ctx)
			if req.GetBody != nil {
				if r2.Body, err = req.GetBody(); err != nil {
					return nil, err
				}
			}
			req = r2
			continue
		}
		return nil, err
	}
}

// post sends POST path with a JSON body, written by hand: the hot path of
// every call, which http.NewRequest, http.Client and Request.Write would
// cost some tens of allocations (a URL, headers, a transfer writer).
//
// With plain set, an answer of the plain shape the daemon gives a call
// (see readPlainAnswer) is read whole into *plain, and the response is
// nil; any other answer is read by http.ReadResponse, as RoundTrip's is,
// and returned as a response.
func (t *unixTransport) post(ctx context.Context, path string, body []byte, plain *[]byte) (*http.Response, error) {
	write := func(w *bufio.Writer) error {
		w.WriteString("POST ")
		w.WriteString(path)
		w.WriteString(" HTTP/1.1\r\nHost: resilienced\r\nUser-Agent: Go-http-client/1.1\r\nContent-Type: application/json\r\nContent-Length: ")
		var n [20]byte
		w.Write(strconv.AppendInt(n[:0], int64(len(body)), 10))
		w.WriteString("\r\n\r\n")
		_, err := w.Write(body)
		return err
	}
	for retried := false; ; retried = true {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cc, reused, err := t.conn(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(ctx, cc, false, true, write, plain)
		if err == nil {
			return resp, nil
		}
		var unsent *errUnsent
		if reused && !retried && errors.As(err, &unsent) {
			continue // as in RoundTrip: nothing was sent
		}
		return nil, err
	}
}

// exchange sends a request (write writes it) on cc and reads the answer's
// header; the body is read by the caller, and cc returns to the idle list
// once it is read to the end.
func (t *unixTransport) exchange(ctx context.Context, cc *clientConn, head, keep bool, write func(*bufio.Writer) error, plain *[]byte) (*http.Response, error) {
	// Closing the connection is how a context ends a request in flight.
	stop := context.AfterFunc(ctx, func() { cc.nc.Close() })
	fail := func(err error) (*http.Response, error) {
		stop()
		cc.nc.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}
	cc.cw.n = 0
	err := write(cc.bw)
	if err == nil {
		err = cc.bw.Flush()
	}
	if err != nil {
		if cc.cw.n == 0 && ctx.Err() == nil {
			stop()
			cc.nc.Close()
			return nil, &errUnsent{err}
		}
		return fail(err)
	}
	if plain != nil {
		b, closeConn, ok, err := readPlainAnswer(cc.br)
		if err != nil {
			return fail(err)
		}
		if ok {
			*plain = b
			if stop() && keep && !closeConn {
				t.put(cc)
			} else {
				cc.nc.Close()
			}
			return nil, nil
		}
	}
	var method *http.Request // nil: GET, which reads an answer as POST does
	if head {
		method = headRequest
	}
	resp, err := http.ReadResponse(cc.br, method)
	if err != nil {
		return fail(err)
	}
	body := &connBody{t: t, cc: cc, ctx: ctx, rc: resp.Body, stop: stop, keep: !resp.Close && keep}
	if resp.Body == http.NoBody || head {
		body.release(true)
		return resp, nil
	}
	resp.Body = body
	return resp, nil
}

// readPlainAnswer reads an answer of the plain shape: "HTTP/1.1 200", a
// Content-Length of at most MaxBodyBytes, no Transfer-Encoding, and a head
// that fits br's buffer; closeConn says the daemon closes the connection
// after it. It reports false, having consumed nothing, for any other
// answer, which http.ReadResponse then reads: the common answer costs no
// header map, no textproto and no body reader.
func readPlainAnswer(br *bufio.Reader) (body []byte, closeConn, ok bool, err error) {
	head, ok, err := peekHead(br, plainStatus)
	if !ok || err != nil {
		return nil, false, false, err
	}
	headLen := len(head)
	head = head[:len(head)-2] // each line with its CRLF
	rest := head[bytes.Index(head, crlf)+2:]
	n := -1
	for len(rest) > 0 {
		var l []byte
		l, rest, _ = bytes.Cut(rest, crlf)
		k, v, found := bytes.Cut(l, []byte(":"))
		if !found {
			return nil, false, false, nil
		}
		v = bytes.Trim(v, " \t")
		switch {
		case asciiEqualFold(k, "content-length"):
			m, perr := strconv.Atoi(string(v))
			if n >= 0 || perr != nil || m < 0 || m > MaxBodyBytes || v[0] == '+' {
				return nil, false, false, nil
			}
			n = m
		case asciiEqualFold(k, "connection"):
			closeConn = asciiEqualFold(v, "close")
		case asciiEqualFold(k, "transfer-encoding"):
			return nil, false, false, nil
		}
	}
	if n < 0 {
		return nil, false, false, nil
	}
	br.Discard(headLen)
	body = make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, false, false, err
	}
	return body, closeConn, true, nil
}

// headEnd ends an HTTP head.
var headEnd = []byte("\r\n\r\n")

// peekHead waits until br holds a whole HTTP head, up to and including
// its blank line, and returns it without consuming anything. It gives up
// (ok false) as soon as the bytes do not start as prefix does, or when the
// head would not fit br's buffer.
func peekHead(br *bufio.Reader, prefix []byte) (head []byte, ok bool, err error) {
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
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return nil, false, err
		}
	}
}

// asciiEqualFold reports whether b is lower, ignoring the case of ASCII
// letters (as header names compare).
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

// plainStatus starts the answer readPlainAnswer reads.
var plainStatus = []byte("HTTP/1.1 200 ")

// headRequest tells http.ReadResponse that an answer has no body.
var headRequest = &http.Request{Method: http.MethodHead}

// conn returns an idle connection, or dials a new one.
func (t *unixTransport) conn(ctx context.Context) (cc *clientConn, reused bool, err error) {
	now := time.Now()
	t.mu.Lock()
	for len(t.idle) > 0 {
		cc = t.idle[len(t.idle)-1]
		t.idle[len(t.idle)-1] = nil
		t.idle = t.idle[:len(t.idle)-1]
		if now.Sub(cc.idleAt) < idleConnTimeout {
			t.mu.Unlock()
			return cc, true, nil
		}
		cc.nc.Close()
	}
	t.mu.Unlock()
	nc, err := t.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	cw := &countingWriter{w: nc}
	return &clientConn{nc: nc, br: bufio.NewReaderSize(nc, 4<<10), bw: bufio.NewWriterSize(cw, 4<<10), cw: cw}, false, nil
}

// dial opens a new connection to the daemon.
func (t *unixTransport) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", t.socket)
}

// put returns a connection whose answer was read to the end.
func (t *unixTransport) put(cc *clientConn) {
	if cc.br.Buffered() > 0 {
		cc.nc.Close() // bytes nobody asked for: out of step
		return
	}
	cc.idleAt = time.Now()
	t.mu.Lock()
	// The oldest are first: drop those idle too long, and the excess.
	drop := 0
	for drop < len(t.idle) && (cc.idleAt.Sub(t.idle[drop].idleAt) >= idleConnTimeout || len(t.idle)-drop >= maxIdleConns) {
		t.idle[drop].nc.Close()
		drop++
	}
	if drop > 0 {
		n := copy(t.idle, t.idle[drop:])
		clear(t.idle[n:])
		t.idle = t.idle[:n]
	}
	t.idle = append(t.idle, cc)
	t.mu.Unlock()
}

// CloseIdleConnections closes the kept-alive connections not in use;
// http.Client.CloseIdleConnections calls it.
func (t *unixTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, cc := range idle {
		cc.nc.Close()
	}
}

// connBody is an answer's body; reading it to the end gives its connection
// back for the next request, closing it early closes the connection.
type connBody struct {
	t    *unixTransport
	cc   *clientConn
	ctx  context.Context
	rc   io.ReadCloser
	stop func() bool
	keep bool // the connection may carry another request
	done atomic.Bool
}

func (b *connBody) Read(p []byte) (int, error) {
	if b.done.Load() {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.release(true)
	case err != nil:
		b.release(false)
		if ctxErr := b.ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
	}
	return n, err
}

func (b *connBody) Close() error {
	b.release(false)
	return nil
}

func (b *connBody) release(reuse bool) {
	if !b.done.CompareAndSwap(false, true) {
		return
	}
	if !b.stop() {
		reuse = false // the context ended and closed the connection
	}
	if reuse && b.keep {
		b.t.put(b.cc)
		return
	}
	b.cc.nc.Close()
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
