package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/resilienced/resilienced/internal/api"
)

// Remote drives the chaos engine of a daemon over its socket, through the
// same client resilientctl uses for everything else.
type Remote struct {
	client *api.Client
}

// NewRemote returns a Remote for the daemon at socket.
func NewRemote(socket string) *Remote {
	return &Remote{client: api.NewClient(socket)}
}

// Run runs an experiment on the daemon, calling progress for each step,
// and returns its report. Canceling ctx closes the connection, which the
// daemon takes as an interruption: it undoes the faults (use Stop first to
// still get the report).
func (c *Remote) Run(ctx context.Context, spec Spec, progress func(Progress)) (*Report, error) {
	resp, err := c.client.Stream(ctx, "POST", "/v1/chaos/run", spec)
	var e *api.Error
	if errors.As(err, &e) && e.Code == api.CodeNotFound && strings.Contains(e.Message, "no such endpoint") {
		e.Message = "this daemon has no chaos engine (it is older than resilientctl, or was built without it)"
	}
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
	var out struct {
		Stopped bool `json:"stopped"`
	}
	return out.Stopped, c.client.Post(ctx, "/v1/chaos/stop", StopRequest{Reason: reason}, &out)
}

// Status returns what is running.
func (c *Remote) Status(ctx context.Context) (*Status, error) {
	var st Status
	return &st, c.client.Get(ctx, "/v1/chaos", &st)
}
