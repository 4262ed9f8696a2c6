package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/leakcheck"
)

// plainServer serves h on a unix socket at path and counts the
// connections it accepts and the requests it serves.
type plainServer struct {
	srv      *http.Server
	conns    atomic.Int64
	requests atomic.Int64
}

func servePlain(t *testing.T, path string, h http.HandlerFunc) *plainServer {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ps := &plainServer{}
	ps.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ps.requests.Add(1)
			h(w, r)
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				ps.conns.Add(1)
			}
		},
	}
	go ps.srv.Serve(l)
	t.Cleanup(func() { ps.srv.Close() })
	return ps
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	if r.URL.Query().Get("big") != "" {
		// Larger than net/http's buffer: sent chunked.
		b = []byte(`{"output":"` + strings.Repeat("x", 64<<10) + `"}`)
	}
	if len(b) == 0 {
		b = []byte(`{"empty":true}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}

func TestClientKeepsOneConnectionAlive(t *testing.T) {
	leakcheck.Check(t)
	path := filepath.Join(t.TempDir(), "s.sock")
	ps := servePlain(t, path, echoHandler)
	c := NewClient(path)
	ctx := context.Background()
	for i := range 50 {
		var out map[string]any
		route := "/v1/x"
		if i%3 == 0 {
			route += "?big=1"
		}
		if i%2 == 0 {
			if err := c.Get(ctx, route, &out); err != nil {
				t.Fatal(err)
			}
		} else if err := c.Post(ctx, route, map[string]int{"i": i}, &out); err != nil {
			t.Fatal(err)
		}
		if len(out) == 0 {
			t.Fatalf("request %d: empty answer", i)
		}
	}
	if n := ps.conns.Load(); n != 1 {
		t.Errorf("50 sequential requests used %d connections, want 1", n)
	}
}

func TestClientConcurrentRequests(t *testing.T) {
	leakcheck.Check(t)
	path := filepath.Join(t.TempDir(), "s.sock")
	ps := servePlain(t, path, echoHandler)
	c := NewClient(path)
	var wg sync.WaitGroup
	const callers, each = 16, 40
	errs := make(chan error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				var out struct{ I, J int }
				if err := c.Post(context.Background(), "/v1/x", map[string]int{"i": i, "j": j}, &out); err != nil {
					errs <- err
					return
				}
				if out.I != i || out.J != j {
					errs <- errors.New("an answer reached the wrong caller")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := ps.requests.Load(); n != callers*each {
		t.Errorf("server saw %d requests, want %d", n, callers*each)
	}
	if n := ps.conns.Load(); n > callers {
		t.Errorf("%d callers used %d connections", callers, n)
	}
}

// A daemon restart closes the client's kept-alive connection; the next
// request goes out on a new one, exactly once.
func TestClientSurvivesDaemonRestart(t *testing.T) {
	leakcheck.Check(t)
	path := filepath.Join(t.TempDir(), "s.sock")
	first := servePlain(t, path, echoHandler)
	c := NewClient(path)
	ctx := context.Background()
	if err := c.Post(ctx, "/v1/x", map[string]int{"i": 1}, nil); err != nil {
		t.Fatal(err)
	}
	first.srv.Close()
	second := servePlain(t, path, echoHandler)
	for i := range 3 {
		if err := c.Post(ctx, "/v1/x", map[string]int{"i": i}, nil); err != nil {
			t.Fatalf("request %d after the restart: %v", i, err)
		}
	}
	if n := second.requests.Load(); n != 3 {
		t.Errorf("the new daemon saw %d requests, want 3 (none sent twice)", n)
	}
}

func TestClientContextEndsRequestInFlight(t *testing.T) {
	leakcheck.Check(t)
	path := filepath.Join(t.TempDir(), "s.sock")
	gone := make(chan struct{})
	servePlain(t, path, func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)   // net/http watches for the client going only then
		<-r.Context().Done() // the client went away
		close(gone)
	})
	c := NewClient(path)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := c.Post(ctx, "/v1/slow", map[string]int{}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want one wrapping context.DeadlineExceeded", err)
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the server never saw the client go")
	}
}

func TestClientReusesConnectionAfterErrorAnswer(t *testing.T) {
	leakcheck.Check(t)
	path := filepath.Join(t.TempDir(), "s.sock")
	ps := servePlain(t, path, func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: "nope"})
	})
	c := NewClient(path)
	for range 5 {
		err := c.Get(context.Background(), "/v1/missing", nil)
		var e *Error
		if !errors.As(err, &e) || e.Code != CodeNotFound {
			t.Fatalf("err = %v, want a not-found *Error", err)
		}
	}
	if n := ps.conns.Load(); n != 1 {
		t.Errorf("5 error answers used %d connections, want 1", n)
	}
}

func TestReadPlainAnswer(t *testing.T) {
	leakcheck.Check(t)
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
