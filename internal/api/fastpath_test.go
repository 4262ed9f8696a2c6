package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rawConn is a client connection that writes requests by hand.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, f *fixture) *rawConn {
	t.Helper()
	nc, err := net.Dial("unix", f.sock.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func callRequest(path, body string, headers ...string) string {
	return "POST " + path + " HTTP/1.1\r\nHost: resilienced\r\n" + strings.Join(append(headers, ""), "\r\n") +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

func (c *rawConn) write(s string) {
	c.t.Helper()
	if _, err := c.nc.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// read reads one answer whole.
func (c *rawConn) read() (*http.Response, []byte) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp, b
}

// comparable strips what differs from call to call (agent, seq, the
// agent's call counter) from an answer's body.
func comparable(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("answer %q: %v", b, err)
	}
	delete(m, "agent")
	delete(m, "seq")
	if out, ok := m["output"].(map[string]any); ok {
		delete(out, "agent")
		delete(out, "call")
		delete(out, "usage") // counts the request's bytes
	}
	return m
}

// TestFastPathAnswersAsNetHTTP: every call answered on the fast path gets
// the status and body net/http gives the same request (sent with a query,
// which only net/http takes).
func TestFastPathAnswersAsNetHTTP(t *testing.T) {
	f := newFixture(t)
	cases := []struct{ path, body string }{
		{"/v1/pools/echo/call", `{"input":"hi"}`},
		{"/v1/pools/echo/call", ` { "input" : {"q": [1, 2]} , "timeout" : "5s" } `},
		{"/v1/pools/echo/call", `{"input":"a","session":"s-%s"}`},
		{"/v1/pools/echo/call", `{"input":"hi","key":"k-%s"}`},
		{"/v1/pools/echo/call", `{"input":"hi","Timeout":"5s"}`},
		{"/v1/pools/echo/call", `{"input":"hi","timeout":"soon"}`},
		{"/v1/pools/echo/call", `{"input":"hi","extra":1}`},
		{"/v1/pools/echo/call", `{"input":`},
		{"/v1/pools/echo/call", `{"input":1} {"input":2}`},
		{"/v1/pools/echo/call", `[]`},
		{"/v1/pools/nope/call", `{"input":"hi"}`},
	}
	c := dialRaw(t, f)
	// Sessions and keys differ per path: the second would find the first's.
	name := func(body, path string) string { return strings.ReplaceAll(body, "%s", path) }
	for _, tc := range cases {
		c.write(callRequest(tc.path, name(tc.body, "fast")))
		fast, fb := c.read()
		if fast.Header.Get("Date") == "" || fast.Header.Get("Content-Type") != "application/json" || fast.ContentLength != int64(len(fb)) {
			t.Errorf("%s %s: fast path headers %v", tc.path, tc.body, fast.Header)
		}
		n := dialRaw(t, f) // a new connection: the query sends it to net/http for good
		n.write(callRequest(tc.path+"?via=net-http", name(tc.body, "net-http")))
		slow, sb := n.read()
		if fast.StatusCode != slow.StatusCode {
			t.Errorf("%s %s: fast path %d %s, net/http %d %s", tc.path, tc.body, fast.StatusCode, fb, slow.StatusCode, sb)
			continue
		}
		got, want := comparable(t, fb), comparable(t, sb)
		if gb, _ := json.Marshal(got); !bytes.Equal(gb, mustJSON(t, want)) {
			t.Errorf("%s %s: fast path %s, net/http %s", tc.path, tc.body, fb, sb)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFastPathHandsOff: a connection goes to net/http at its first request
// of another kind, with the bytes already read, and stays there;
// pipelined requests are answered in order.
func TestFastPathHandsOff(t *testing.T) {
	f := newFixture(t)
	c := dialRaw(t, f)
	call := callRequest("/v1/pools/echo/call", `{"input":"one"}`)
	version := "GET /v1/version HTTP/1.1\r\nHost: resilienced\r\n\r\n"
	c.write(call + version + call) // one write: the fast path reads ahead
	for i, want := range []string{`"answer":"one"`, `"version":"test"`, `"answer":"one"`} {
		resp, b := c.read()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(want)) {
			t.Fatalf("answer %d: %d %s, want %s", i, resp.StatusCode, b, want)
		}
	}
	// Requests the fast path leaves to net/http, on fresh connections.
	for _, req := range []string{
		"POST /v1/pools/echo/call HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"input\":\"one\"}\r\n0\r\n\r\n",
		"POST /v1/pools/echo/call HTTP/1.0\r\nContent-Length: 15\r\n\r\n{\"input\":\"one\"}",
		"POST /v1/pools/e%63ho/call HTTP/1.1\r\nHost: r\r\nContent-Length: 15\r\n\r\n{\"input\":\"one\"}",
	} {
		c := dialRaw(t, f)
		c.write(req)
		resp, b := c.read()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"answer":"one"`)) {
			t.Errorf("%q: %d %s", req, resp.StatusCode, b)
		}
	}
	// A body over the fast path's 64 KiB, partly read ahead already.
	big := `{"input":"` + strings.Repeat("x", 100<<10) + `"}`
	c = dialRaw(t, f)
	c.write(callRequest("/v1/pools/echo/call", big) + version)
	if resp, b := c.read(); resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"answer":"xxxx`)) {
		t.Errorf("a 100 KiB call: %d %.200s", resp.StatusCode, b)
	}
	if resp, b := c.read(); resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"version":"test"`)) {
		t.Errorf("after a 100 KiB call: %d %s", resp.StatusCode, b)
	}
	// A malformed Host: net/http's 400, not an answer from the fast path.
	c = dialRaw(t, f)
	c.write("POST /v1/pools/echo/call HTTP/1.1\r\nHost: a\x01b\r\nContent-Length: 15\r\n\r\n{\"input\":\"one\"}")
	if resp, b := c.read(); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a malformed Host: %d %s, want 400", resp.StatusCode, b)
	}
	// No Host: net/http's 400.
	c = dialRaw(t, f)
	c.write("POST /v1/pools/echo/call HTTP/1.1\r\nContent-Length: 15\r\n\r\n{\"input\":\"one\"}")
	if resp, b := c.read(); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no Host: %d %s, want 400", resp.StatusCode, b)
	}
}

// TestFastPathSlowClient: a request that comes in pieces is answered, and
// Connection: close is honoured.
func TestFastPathSlowClient(t *testing.T) {
	f := newFixture(t)
	c := dialRaw(t, f)
	req := callRequest("/v1/pools/echo/call", `{"input":"slow"}`, "Connection: close")
	for _, part := range []string{req[:7], req[7:40], req[40 : len(req)-5], req[len(req)-5:]} {
		c.write(part)
		time.Sleep(20 * time.Millisecond)
	}
	resp, b := c.read()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"answer":"slow"`)) || !resp.Close {
		t.Fatalf("%d close=%v %s", resp.StatusCode, resp.Close, b)
	}
	if n, err := c.br.ReadByte(); err != io.EOF {
		t.Fatalf("after Connection: close, read %q, %v; want EOF", n, err)
	}
}

// TestFastPathRefusesPeers: a peer the server refuses gets net/http's 403,
// with its reason.
func TestFastPathRefusesPeers(t *testing.T) {
	f := newFixture(t)
	sock, err := Listen(t.TempDir() + "/api.sock")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(Options{Supervisor: f.sup, Logger: quiet, Authorize: func(PeerCred) error { return errors.New("not you") }})
	go srv.Serve(sock)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	c := dialRaw(t, &fixture{sock: sock})
	c.write(callRequest("/v1/pools/echo/call", `{"input":"hi"}`))
	if resp, b := c.read(); resp.StatusCode != http.StatusForbidden || !bytes.Contains(b, []byte("not you")) {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

// TestShutdownClosesIdleConnections: Shutdown returns without waiting for
// a kept-alive connection, which is closed, and Serve returns nil.
func TestShutdownClosesIdleConnections(t *testing.T) {
	f := newFixture(t)
	c := dialRaw(t, f)
	c.write(callRequest("/v1/pools/echo/call", `{"input":"hi"}`))
	c.read()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection after Shutdown: %v, want EOF", err)
	}
	if _, err := net.Dial("unix", f.sock.Path); err == nil {
		t.Fatal("the socket still accepts connections")
	}
}

func TestReadPlainAnswer(t *testing.T) {
	for _, tc := range []struct {
		raw       string
		ok, close bool
		body      string
	}{
		{"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3\r\nDate: x\r\n\r\n{}\n", true, false, "{}\n"},
		{"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nConnection: close\r\n\r\n{}", true, true, "{}"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true, false, ""},
		{"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}", false, false, ""},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", false, false, ""},
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", false, false, ""},
		{"HTTP/1.1 200 OK\r\n\r\n", false, false, ""},
		{"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", false, false, ""},
	} {
		br := bufio.NewReader(strings.NewReader(tc.raw))
		body, closeConn, ok, err := readPlainAnswer(br)
		if err != nil || ok != tc.ok || (ok && (closeConn != tc.close || string(body) != tc.body)) {
			t.Errorf("%q: body %q close %v ok %v err %v", tc.raw, body, closeConn, ok, err)
			continue
		}
		if !ok { // nothing consumed: http.ReadResponse reads the same answer
			if _, err := http.ReadResponse(br, nil); err != nil {
				t.Errorf("%q: after a refusal, http.ReadResponse: %v", tc.raw, err)
			}
		}
	}
}

// FuzzCallHead: parseCallHead takes only what the fast path can serve,
// consumes nothing, and never fails on garbage.
//
//	go test -run '^$' -fuzz FuzzCallHead -fuzztime 60s ./internal/api/
func FuzzCallHead(f *testing.F) {
	for _, s := range []string{
		callRequest("/v1/pools/echo/call", `{"input":1}`),
		callRequest("/v1/pools/echo/call", `{}`, "Connection: close", "X-A: b"),
		callRequest("/v1/pools/a.b_c-1/call", `{}`, "Connection: keep-alive"),
		"POST /v1/pools/echo/call HTTP/1.1\r\nHost: r\r\nContent-Length: 99999999\r\n\r\n",
		"POST /v1/pools/echo/call HTTP/1.1\r\nHost: r\r\n Content-Length: 1\r\n\r\n",
		"GET /v1/status HTTP/1.1\r\n\r\n", "POST /v1/pools//call HTTP/1.1\r\n\r\n", "\r\n\r\n", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(b), 256)
		br.Peek(1)
		h, ok, _ := parseCallHead(br, nil)
		if br.Buffered() != min(len(b), br.Size()) {
			t.Fatalf("consumed %d bytes", min(len(b), br.Size())-br.Buffered())
		}
		if !ok {
			return
		}
		if !plainPoolName([]byte(h.pool)) || h.bodyLen < 0 || h.bodyLen > fastBodyMax || h.headLen > len(b) ||
			!bytes.HasPrefix(b, []byte("POST /v1/pools/"+h.pool+"/call HTTP/1.1\r\n")) || !bytes.HasSuffix(b[:h.headLen], headEnd) {
			t.Fatalf("%q: took %+v", b, h)
		}
	})
}

// TestFastPathSurvivesAPanic: a panic while serving a call ends that
// connection, not the server. (A server with no supervisor panics on any
// call.)
func TestFastPathSurvivesAPanic(t *testing.T) {
	sock, err := Listen(t.TempDir() + "/api.sock")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(Options{Version: "test", Logger: quiet})
	go srv.Serve(sock)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	f := &fixture{sock: sock}
	c := dialRaw(t, f)
	c.write(callRequest("/v1/pools/echo/call", `{"input":"hi"}`))
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Fatalf("after a panic: %v, want the connection closed", err)
	}
	c = dialRaw(t, f)
	c.write("GET /v1/version HTTP/1.1\r\nHost: r\r\n\r\n")
	if resp, b := c.read(); resp.StatusCode != http.StatusOK {
		t.Fatalf("the server after a panic: %d %s", resp.StatusCode, b)
	}
}

// TestFastPathStalledRequest: a request that stops halfway, in its head or
// its body, is dropped after the server's ReadHeaderTimeout, as net/http
// drops it, and holds nothing up: Shutdown does not wait for it.
func TestFastPathStalledRequest(t *testing.T) {
	f := newFixture(t)
	sock, err := Listen(t.TempDir() + "/api.sock")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(Options{Supervisor: f.sup, Logger: quiet})
	srv.http.ReadHeaderTimeout = 200 * time.Millisecond
	go srv.Serve(sock)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	req := callRequest("/v1/pools/echo/call", `{"input":"hi"}`)
	for _, part := range []string{req[:20], req[:len(req)-4]} {
		c := dialRaw(t, &fixture{sock: sock})
		c.write(part)
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Errorf("%q, then silence: %v, want the connection closed", part, err)
		}
	}
	// A connection idle between requests is not timed out.
	c := dialRaw(t, &fixture{sock: sock})
	c.write(req)
	c.read()
	time.Sleep(400 * time.Millisecond)
	c.write(req)
	if resp, b := c.read(); resp.StatusCode != http.StatusOK {
		t.Fatalf("after an idle pause: %d %s", resp.StatusCode, b)
	}
}

// scriptedListener returns the errors of errs from Accept, one per call,
// then blocks until closed.
type scriptedListener struct {
	errs   chan error
	closed chan struct{}
	once   sync.Once
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	select {
	case err := <-l.errs:
		return nil, err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}
func (l *scriptedListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *scriptedListener) Addr() net.Addr { return &net.UnixAddr{Name: "scripted", Net: "unix"} }

// TestServeAcceptErrors: Serve waits and tries again after a temporary
// accept error (out of file descriptors), and returns, saying why, after a
// permanent one.
func TestServeAcceptErrors(t *testing.T) {
	l := &scriptedListener{errs: make(chan error, 2), closed: make(chan struct{})}
	srv := NewServer(Options{Logger: quiet})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(&Socket{Listener: l, GID: -1}) }()
	l.errs <- &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	l.errs <- &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EINVAL)}
	select {
	case err := <-done:
		if !errors.Is(err, syscall.EINVAL) {
			t.Fatalf("Serve returned %v, want the permanent error (EINVAL)", err)
		}
		if len(l.errs) != 0 {
			t.Fatal("Serve returned before it tried again after EMFILE")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after a permanent accept error")
	}
}
