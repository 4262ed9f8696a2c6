package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/leakcheck"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// waitError is an error with a retry hint, as the supervisor's breaker
// gives when it is open.
type waitError struct{ wait time.Duration }

func (e waitError) Error() string             { return "breaker open" }
func (e waitError) RetryAfter() time.Duration { return e.wait }
func (e waitError) Unwrap() error             { return supervisor.ErrBreakerOpen }

// TestWriteErrorRetryAfter: an error whose chain carries a retry hint is
// answered with Retry-After, in whole seconds rounded up; any other
// without.
func TestWriteErrorRetryAfter(t *testing.T) {
	leakcheck.Check(t)
	for _, tc := range []struct {
		err  error
		want string // "": no header
	}{
		{waitError{2 * time.Second}, "2"},
		{waitError{1200 * time.Millisecond}, "2"},
		{waitError{300 * time.Millisecond}, "1"},
		{waitError{time.Nanosecond}, "1"},
		{waitError{0}, ""},
		{waitError{-time.Second}, ""},
		{fmt.Errorf("pool p: %w", waitError{5 * time.Second}), "5"},
		{&Error{Status: http.StatusServiceUnavailable, Code: CodeBreakerOpen, Message: "open", Retry: 3 * time.Second}, "3"},
		{supervisor.ErrBreakerOpen, ""},
		{errors.New("boom"), ""},
	} {
		w := httptest.NewRecorder()
		WriteError(w, tc.err)
		got, has := w.Header()["Retry-After"]
		switch {
		case tc.want == "" && has:
			t.Errorf("%v: Retry-After %q, want none", tc.err, got)
		case tc.want != "" && (len(got) != 1 || got[0] != tc.want):
			t.Errorf("%v: Retry-After %q, want %q", tc.err, got, tc.want)
		}
	}
	// The hint does not change how the error is classified.
	w := httptest.NewRecorder()
	WriteError(w, waitError{time.Second})
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), CodeBreakerOpen) {
		t.Errorf("a breaker error with a hint: %d %s", w.Code, w.Body)
	}
}

// TestRouteHeaders: every route's answer, read off the socket, carries the
// headers its handler set, and no others that matter: Content-Type, the
// framing (a Content-Length equal to the body for a JSON answer, chunks
// for a stream), Connection: close where the handler asked for it, and
// Retry-After exactly where the error carries a hint.
func TestRouteHeaders(t *testing.T) {
	leakcheck.Check(t)
	f := newFixture(t)
	f.srv.Handle("GET /v1/test/breaker", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, fmt.Errorf("pool echo: %w", waitError{1500 * time.Millisecond}))
	})
	f.srv.Handle("GET /v1/test/header", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Resilienced-Test", "kept")
		WriteJSON(w, http.StatusAccepted, map[string]int{"n": 1})
	})
	const (
		jsonCT   = "application/json"
		ndjsonCT = "application/x-ndjson"
	)
	type want struct {
		status  int
		ct      string
		chunked bool              // else a Content-Length equal to the body's
		headers map[string]string // more headers, exactly ("" for absent)
		close   bool
	}
	noRetry := map[string]string{"Retry-After": ""}
	for _, tc := range []struct {
		req  string
		want want
	}{
		{"GET /v1/version", want{status: 200, ct: jsonCT, headers: noRetry}},
		{"GET /v1/status", want{status: 200, ct: jsonCT, headers: noRetry}},
		{"GET /v1/agents", want{status: 200, ct: jsonCT, headers: noRetry}},
		{"GET /v1/agents?pool=nope", want{status: 404, ct: jsonCT, headers: noRetry}},
		{callRequest("/v1/pools/echo/call", `{"input":"hi"}`), want{status: 200, ct: jsonCT, headers: noRetry}},
		{callRequest("/v1/pools/echo/call", `{"input":"hi","violation":1}`), want{status: 400, ct: jsonCT, headers: noRetry}},
		{callRequest("/v1/pools/nope/call", `{"input":"hi"}`), want{status: 404, ct: jsonCT, headers: noRetry}},
		{callRequest("/v1/pools/echo/call", `{"input":`), want{status: 400, ct: jsonCT, headers: noRetry}},
		{"POST /v1/pools/echo/call/stream HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n" + `f` + "\r\n" + `{"input":"hi"}` + "\n\r\n0\r\n\r\n",
			want{status: 200, ct: ndjsonCT, chunked: true, headers: noRetry}},
		{"POST /v1/pools/nope/call/stream HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			want{status: 404, ct: jsonCT, close: true, headers: noRetry}},
		{callRequest("/v1/pools/nope/restart", ``), want{status: 404, ct: jsonCT, headers: noRetry}},
		{callRequest("/v1/pools/echo/scale", `{"replicas":2}`), want{status: 200, ct: jsonCT, headers: noRetry}},
		{callRequest("/v1/pools/echo/scale", `{"replicas":"two"}`), want{status: 400, ct: jsonCT, headers: noRetry}},
		{"GET /v1/pools/echo/ring", want{status: 200, ct: jsonCT, headers: noRetry}},
		{callRequest("/v1/agents/nope/restart", ``), want{status: 404, ct: jsonCT, headers: noRetry}},
		{callRequest("/v1/agents/nope/drain", ``), want{status: 404, ct: jsonCT, headers: noRetry}},
		{"GET /v1/events?since=1h", want{status: 200, ct: ndjsonCT, chunked: true, headers: noRetry}},
		{"GET /v1/events?since=never", want{status: 400, ct: jsonCT, headers: noRetry}},
		{"GET /v1/sessions", want{status: 200, ct: jsonCT, headers: noRetry}},
		{"GET /v1/sessions/nope", want{status: 404, ct: jsonCT, headers: noRetry}},
		{"GET /v1/nope", want{status: 404, ct: jsonCT, headers: noRetry}},
		{"GET /v1/test/breaker", want{status: 503, ct: jsonCT, headers: map[string]string{"Retry-After": "2"}}},
		{"GET /v1/test/header", want{status: 202, ct: jsonCT, headers: map[string]string{"X-Resilienced-Test": "kept", "Retry-After": ""}}},
	} {
		req := tc.req
		if strings.HasPrefix(req, "GET ") {
			req += " HTTP/1.1\r\nHost: resilienced\r\n\r\n"
		}
		name, _, _ := strings.Cut(req, "\r\n")
		c := dialRaw(t, f)
		c.write(req)
		resp, body := c.read()
		w := tc.want
		h := resp.Header
		if resp.StatusCode != w.status {
			t.Errorf("%s: status %d, want %d (%s)", name, resp.StatusCode, w.status, body)
		}
		if got := h.Get("Content-Type"); got != w.ct {
			t.Errorf("%s: Content-Type %q, want %q", name, got, w.ct)
		}
		if h.Get("Date") == "" {
			t.Errorf("%s: no Date", name)
		}
		if w.chunked {
			if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
				t.Errorf("%s: Transfer-Encoding %q, want chunked", name, resp.TransferEncoding)
			}
		} else if cl := h.Get("Content-Length"); cl != strconv.Itoa(len(body)) || resp.TransferEncoding != nil {
			t.Errorf("%s: Content-Length %q, Transfer-Encoding %q, for a body of %d bytes", name, cl, resp.TransferEncoding, len(body))
		}
		if resp.Close != w.close {
			t.Errorf("%s: Connection: close %v, want %v", name, resp.Close, w.close)
		}
		for k, v := range w.headers {
			if got, has := h[k]; v == "" && has || v != "" && (len(got) != 1 || got[0] != v) {
				t.Errorf("%s: %s %q, want %q", name, k, got, v)
			}
		}
	}
}

// TestClientReadsRetryAfter: the client gives a breaker's hint back as
// Error.Retry, from the header, through the socket.
func TestClientReadsRetryAfter(t *testing.T) {
	leakcheck.Check(t)
	f := newFixture(t)
	f.srv.Handle("GET /v1/test/breaker", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, waitError{2500 * time.Millisecond})
	})
	err := f.client.do(context.Background(), "GET", "/v1/test/breaker", nil, nil)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeBreakerOpen || e.Retry != 3*time.Second || e.RetryAfter() != 3*time.Second {
		t.Fatalf("got %#v (%v), want breaker_open with Retry 3s", e, err)
	}
	// An error without a hint has none.
	err = f.client.do(context.Background(), "GET", "/v1/agents?pool=nope", nil, nil)
	if !errors.As(err, &e) || e.Retry != 0 {
		t.Fatalf("got %#v (%v), want no Retry", e, err)
	}
}
