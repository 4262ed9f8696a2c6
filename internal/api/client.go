package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls the daemon over its unix socket.
type Client struct {
	Socket string
	tr     *unixTransport
	http   *http.Client
}

// NewClient returns a client for the daemon at socket.
func NewClient(socket string) *Client {
	tr := &unixTransport{socket: socket}
	return &Client{Socket: socket, tr: tr, http: &http.Client{Transport: tr}}
}

// CloseIdleConnections closes the connections kept for the next request.
func (c *Client) CloseIdleConnections() { c.tr.CloseIdleConnections() }

// do sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return fmt.Errorf("decoding the daemon's answer to %s %s: %w", method, path, err)
		}
	}
	// Read to the end (the newline after the JSON value, the end of a
	// chunked body) so that the connection is kept for the next request.
	io.CopyN(io.Discard, resp.Body, 64<<10)
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://resilienced"+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.sendError(err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, statusError(resp)
	}
	return resp, nil
}

// sendError classifies a failure to send a request: a daemon that does not
// listen is unreachable.
func (c *Client) sendError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return &UnreachableError{Socket: c.Socket, Err: op.Err}
	}
	return err
}

// statusError is the error an answer with a status of 300 or more carries.
func statusError(resp *http.Response) error {
	var e struct {
		Error *Error `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &e) != nil || e.Error == nil {
		return &Error{Status: resp.StatusCode, Code: CodeInternal, Message: fmt.Sprintf("daemon answered %s: %.200s", resp.Status, b)}
	}
	e.Error.Status = resp.StatusCode
	if n, err := strconv.ParseInt(resp.Header.Get("Retry-After"), 10, 64); err == nil && n > 0 {
		e.Error.Retry = time.Duration(n) * time.Second
	}
	return e.Error
}

// Version asks the daemon's version.
func (c *Client) Version(ctx context.Context) (VersionInfo, error) {
	var v VersionInfo
	return v, c.do(ctx, "GET", "/v1/version", nil, &v)
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	return &s, c.do(ctx, "GET", "/v1/status", nil, &s)
}

// Agents lists agents ("" for every pool).
func (c *Client) Agents(ctx context.Context, pool string) ([]AgentStatus, error) {
	var as []AgentStatus
	return as, c.do(ctx, "GET", "/v1/agents?pool="+url.QueryEscape(pool), nil, &as)
}

// Call runs one call on pool. It is the hot path: the request is written
// by hand and the answer read whole before it is decoded (see
// unixTransport.post).
func (c *Client) Call(ctx context.Context, pool string, req CallRequest) (*CallResponse, error) {
	var b []byte
	if call := (StreamCall{CallRequest: req}); handEncodable(&call) {
		b = appendCallBody(nil, &call)
	} else {
		var err error
		if b, err = json.Marshal(req); err != nil {
			return nil, err
		}
	}
	path := "/v1/pools/" + url.PathEscape(pool) + "/call"
	var plain []byte
	resp, err := c.tr.post(ctx, path, b, &plain)
	if err != nil {
		return nil, c.sendError(err)
	}
	if resp == nil { // a 200 answer, read whole
		if a, ok := decodeResponseFast(plain, false); ok {
			return a.CallResponse, nil
		}
		var out CallResponse
		if err := json.Unmarshal(plain, &out); err != nil {
			return nil, fmt.Errorf("decoding the daemon's answer to POST %s: %w", path, err)
		}
		return &out, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return nil, statusError(resp)
	}
	if resp.ContentLength >= 0 && resp.ContentLength <= MaxBodyBytes {
		b = make([]byte, resp.ContentLength)
		_, err = io.ReadFull(resp.Body, b)
	} else {
		b, err = io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes))
	}
	var out CallResponse
	if err == nil {
		err = json.Unmarshal(b, &out)
	}
	if err != nil {
		return nil, fmt.Errorf("decoding the daemon's answer to POST %s: %w", path, err)
	}
	// Read to the end, so that the connection is kept for the next call.
	io.CopyN(io.Discard, resp.Body, 64<<10)
	return &out, nil
}

// RestartPool replaces every agent of the pool, one by one keeping its
// replicas serving, or with allAtOnce all of them at once.
func (c *Client) RestartPool(ctx context.Context, pool string, allAtOnce bool) error {
	path := "/v1/pools/" + url.PathEscape(pool) + "/restart"
	if allAtOnce {
		path += "?all_at_once=1"
	}
	return c.do(ctx, "POST", path, nil, nil)
}

// Logs returns the last stderr lines of an agent, or of a pool's agents
// (tail > 0: the last tail of them).
func (c *Client) Logs(ctx context.Context, target string, tail int) ([]LogLine, error) {
	var out []LogLine
	path := "/v1/logs/" + url.PathEscape(target)
	if tail > 0 {
		path += "?tail=" + strconv.Itoa(tail)
	}
	return out, c.do(ctx, "GET", path, nil, &out)
}

// Reload makes the daemon apply its config file again, and returns what
// changed; an invalid file is an *Error with code CodeInvalidConfig.
func (c *Client) Reload(ctx context.Context) (*ReloadResult, error) {
	var r ReloadResult
	return &r, c.do(ctx, "POST", "/v1/reload", nil, &r)
}

// Upgrade asks the daemon to hand its agents over to a new instance of its
// binary (see resilientctl upgrade).
func (c *Client) Upgrade(ctx context.Context) (*UpgradeResult, error) {
	var r UpgradeResult
	return &r, c.do(ctx, "POST", "/v1/upgrade", nil, &r)
}

// RestartAgent replaces one agent.
func (c *Client) RestartAgent(ctx context.Context, id string) error {
	return c.do(ctx, "POST", "/v1/agents/"+url.PathEscape(id)+"/restart", nil, nil)
}

// Drain drains one agent.
func (c *Client) Drain(ctx context.Context, id string) error {
	return c.do(ctx, "POST", "/v1/agents/"+url.PathEscape(id)+"/drain", nil, nil)
}

// Scale sets a pool's replicas.
func (c *Client) Scale(ctx context.Context, pool string, req ScaleRequest) error {
	return c.do(ctx, "POST", "/v1/pools/"+url.PathEscape(pool)+"/scale", req, nil)
}

// Ring describes a pool's ring.
func (c *Client) Ring(ctx context.Context, pool string) (*RingInfo, error) {
	var r RingInfo
	return &r, c.do(ctx, "GET", "/v1/pools/"+url.PathEscape(pool)+"/ring", nil, &r)
}

// Sessions lists sessions ("" for every pool).
func (c *Client) Sessions(ctx context.Context, pool string) ([]SessionInfo, error) {
	var s []SessionInfo
	return s, c.do(ctx, "GET", "/v1/sessions?pool="+url.QueryEscape(pool), nil, &s)
}

// Session returns a session's context.
func (c *Client) Session(ctx context.Context, pool, id string) (*SessionDetail, error) {
	var d SessionDetail
	return &d, c.do(ctx, "GET", "/v1/sessions/"+url.PathEscape(id)+"?pool="+url.QueryEscape(pool), nil, &d)
}

// Events calls fn for each remembered event that eq selects; with
// eq.Follow it keeps streaming until ctx ends or fn returns an error.
func (c *Client) Events(ctx context.Context, eq EventQuery, fn func(Event) error) error {
	q := url.Values{}
	if eq.Since > 0 {
		q.Set("since", eq.Since.String())
	}
	if eq.Follow {
		q.Set("follow", "1")
	}
	if eq.Tail > 0 {
		q.Set("tail", strconv.Itoa(eq.Tail))
	}
	if eq.Pool != "" {
		q.Set("pool", eq.Pool)
	}
	if eq.Agent != "" {
		q.Set("agent", eq.Agent)
	}
	if len(eq.Kinds) > 0 {
		q.Set("kind", strings.Join(eq.Kinds, ","))
	}
	resp, err := c.send(ctx, "GET", "/v1/events?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("event stream: %w", err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// Stream sends a request and returns the response for the caller to read
// as it comes (newline-delimited JSON streams) and then close. Errors are
// classified as for every other method.
func (c *Client) Stream(ctx context.Context, method, path string, body any) (*http.Response, error) {
	return c.send(ctx, method, path, body)
}

// Do sends req to the daemon over the socket (its URL's host is ignored)
// and returns the answer whatever its status, for protocols the client
// does not speak itself (the MCP relay). A daemon that does not listen is
// an [*UnreachableError].
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.sendError(err)
	}
	return resp, nil
}

// Get sends GET path and decodes the answer into out: for routes other
// packages add.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	return c.do(ctx, "GET", path, nil, out)
}

// Post sends POST path with body and decodes the answer into out.
func (c *Client) Post(ctx context.Context, path string, body, out any) error {
	return c.do(ctx, "POST", path, body, out)
}
