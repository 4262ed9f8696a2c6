package chaos

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

	"github.com/resilienced/resilienced/internal/api"
)

// Remote drives the chaos engine of a daemon over its socket.
type Remote struct {
	socket string
	http   *http.Client
}

// NewRemote returns a client for the daemon at socket.
func NewRemote(socket string) *Remote {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Remote{socket: socket, http: &http.Client{Transport: tr}}
}

// Run runs an experiment on the daemon, calling progress for each step,
// and returns its report. Canceling ctx closes the connection, which the
// daemon takes as an interruption: it undoes the faults (use Stop first to
// still get the report).
func (c *Remote) Run(ctx context.Context, spec Spec, progress func(Progress)) (*Report, error) {
	body, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(ctx, "POST", "/v1/chaos/run", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var m Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, fmt.Errorf("chaos stream: %w", err)
		}
		switch {
		case m.Error != nil:
			return nil, m.Error
		case m.Report != nil:
			return m.Report, nil
		case m.Progress != nil && progress != nil:
			progress(*m.Progress)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("chaos stream: %w", err)
	}
	return nil, errors.New("the daemon ended the chaos stream without a report (did it stop?)")
}

// Stop ends the experiment running on the daemon, giving reason as the
// cause; its Run still returns the report. It reports whether one was
// running.
func (c *Remote) Stop(ctx context.Context, reason string) (bool, error) {
	body, err := json.Marshal(StopRequest{Reason: reason})
	if err != nil {
		return false, err
	}
	var out struct {
		Stopped bool `json:"stopped"`
	}
	return out.Stopped, c.do(ctx, "POST", "/v1/chaos/stop", body, &out)
}

// Status returns what is running.
func (c *Remote) Status(ctx context.Context) (*Status, error) {
	var st Status
	return &st, c.do(ctx, "GET", "/v1/chaos", nil, &st)
}

func (c *Remote) do(ctx context.Context, method, path string, body []byte, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

func (c *Remote) send(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
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
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return nil, &api.UnreachableError{Socket: c.socket, Err: op.Err}
		}
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		var e struct {
			Error *api.Error `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) != nil || e.Error == nil {
			return nil, &api.Error{Status: resp.StatusCode, Code: api.CodeInternal, Message: fmt.Sprintf("daemon answered %s: %.200s", resp.Status, b)}
		}
		e.Error.Status = resp.StatusCode
		if resp.StatusCode == http.StatusNotFound && e.Error.Code == api.CodeNotFound && path == "/v1/chaos/run" && bytes.Contains(b, []byte("no such endpoint")) {
			e.Error.Message = "this daemon has no chaos engine (it is older than resilientctl, or was built without it)"
		}
		return nil, e.Error
	}
	return resp, nil
}
