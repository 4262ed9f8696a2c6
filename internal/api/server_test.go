package api

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/leakcheck"
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

// TestRequestShapes: pipelined requests of different kinds on one
// connection are answered in order, and calls of every shape HTTP/1.x
// allows (chunked, HTTP/1.0, an escaped path, a large body) are answered;
// a malformed or missing Host is refused with 400.
func TestRequestShapes(t *testing.T) {
	leakcheck.Check(t)
	f := newFixture(t)
	c := dialRaw(t, f)
	call := callRequest("/v1/pools/echo/call", `{"input":"one"}`)
	version := "GET /v1/version HTTP/1.1\r\nHost: resilienced\r\n\r\n"
	c.write(call + version + call) // one write: the server reads ahead
	for i, want := range []string{`"answer":"one"`, `"version":"test"`, `"answer":"one"`} {
		resp, b := c.read()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(want)) {
			t.Fatalf("answer %d: %d %s, want %s", i, resp.StatusCode, b, want)
		}
	}
	// Other shapes of the same call, on fresh connections.
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
	// A body over the 64 KiB read whole for the hand-written decoder.
	big := `{"input":"` + strings.Repeat("x", 100<<10) + `"}`
	c = dialRaw(t, f)
	c.write(callRequest("/v1/pools/echo/call", big) + version)
	if resp, b := c.read(); resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"answer":"xxxx`)) {
		t.Errorf("a 100 KiB call: %d %.200s", resp.StatusCode, b)
	}
	if resp, b := c.read(); resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"version":"test"`)) {
		t.Errorf("after a 100 KiB call: %d %s", resp.StatusCode, b)
	}
	// A malformed Host: 400.
	c = dialRaw(t, f)
	c.write("POST /v1/pools/echo/call HTTP/1.1\r\nHost: a\x01b\r\nContent-Length: 15\r\n\r\n{\"input\":\"one\"}")
	if resp, b := c.read(); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a malformed Host: %d %s, want 400", resp.StatusCode, b)
	}
	// No Host: 400.
	c = dialRaw(t, f)
	c.write("POST /v1/pools/echo/call HTTP/1.1\r\nContent-Length: 15\r\n\r\n{\"input\":\"one\"}")
	if resp, b := c.read(); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no Host: %d %s, want 400", resp.StatusCode, b)
	}
}

// TestSlowClient: a request that comes in pieces is answered, and
// Connection: close is honoured.
func TestSlowClient(t *testing.T) {
	leakcheck.Check(t)
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

// TestRefusesPeers: a peer the server refuses gets 403 with its reason,
// for a call and for a call stream, whose connection is then closed.
func TestRefusesPeers(t *testing.T) {
	leakcheck.Check(t)
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
	// A call stream's body would end much later: the answer closes the
	// connection rather than wait for it.
	c = dialRaw(t, &fixture{sock: sock})
	c.write("POST /v1/pools/echo/call/stream HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n")
	if resp, b := c.read(); resp.StatusCode != http.StatusForbidden || !resp.Close {
		t.Fatalf("a call stream: %d close=%v %s", resp.StatusCode, resp.Close, b)
	}
}

// TestAuthorizesOncePerConnection: a peer is judged when it connects, not
// at each request of a kept-alive connection.
func TestAuthorizesOncePerConnection(t *testing.T) {
	leakcheck.Check(t)
	f := newFixture(t)
	sock, err := Listen(t.TempDir() + "/api.sock")
	if err != nil {
		t.Fatal(err)
	}
	var asked atomic.Int32
	srv := NewServer(Options{Supervisor: f.sup, Version: "test", Logger: quiet, Authorize: func(PeerCred) error {
		asked.Add(1)
		return nil
	}})
	go srv.Serve(sock)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	c := dialRaw(t, &fixture{sock: sock})
	for range 3 {
		c.write("GET /v1/version HTTP/1.1\r\nHost: r\r\n\r\n")
		if resp, b := c.read(); resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("Authorize asked %d times for one connection, want once", n)
	}
}

// TestShutdownClosesIdleConnections: Shutdown returns without waiting for
// a kept-alive connection, which is closed, and Serve returns nil.
func TestShutdownClosesIdleConnections(t *testing.T) {
	leakcheck.Check(t)
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

// TestSurvivesAPanic: a panic while serving a call ends that
// connection, not the server. (A server with no supervisor panics on any
// call.)
func TestSurvivesAPanic(t *testing.T) {
	leakcheck.Check(t)
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

// TestStalledRequest: a call that stops halfway, in its head or its body,
// is dropped after the server's ReadHeaderTimeout (net/http bounds the
// head, the call route the body), and holds nothing up: Shutdown does not
// wait for it.
func TestStalledRequest(t *testing.T) {
	leakcheck.Check(t)
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
		// net/http may say why (400) before it closes; never a 200.
		b, err := io.ReadAll(c.br)
		if err != nil || bytes.HasPrefix(b, []byte("HTTP/1.1 200")) {
			t.Errorf("%q, then silence: %q, %v; want the connection closed", part, b, err)
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
	leakcheck.Check(t)
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
