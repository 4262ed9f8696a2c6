package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// NodeAnswer is one node's answer to a view asked of every node
// ([Mesh.Gather]): the view as its own API serves it, or why it has none.
type NodeAnswer struct {
	Node  string          `json:"node"`
	View  json.RawMessage `json:"view,omitempty"`
	Error string          `json:"error,omitempty"`
}

// viewPrefix is where a node serves its views to its peers.
const viewPrefix = "/cluster/v1/view"

// viewTimeout bounds one node's answer to a gathered view: a node that
// does not answer is listed with the error, the others are not held up.
const viewTimeout = 3 * time.Second

// SetViews sets the handler of the read-only views this node shows its
// peers (api.Server.Views): until it is set they are answered 503.
func (m *Mesh) SetViews(h http.Handler) { m.views.Store(&h) }

func (m *Mesh) serveView(w http.ResponseWriter, r *http.Request) {
	h := m.views.Load()
	if h == nil {
		http.Error(w, "cluster: this node serves no views yet (starting)", http.StatusServiceUnavailable)
		return
	}
	r.URL.Path = strings.TrimPrefix(r.URL.Path, viewPrefix)
	r.URL.RawPath = ""
	(*h).ServeHTTP(w, r)
}

// Gather asks every registered node, this one included, for the view at
// path (an API path with its query: /v1/status, /v1/sessions?pool=P,
// /v1/pools/P/ring), all at once, and returns the answers by node name.
// A node that cannot be asked (no connection, taken for dead) or that
// fails is listed with its error.
func (m *Mesh) Gather(ctx context.Context, path string) []NodeAnswer {
	members := m.node.Members()
	out := make([]NodeAnswer, len(members))
	var wg sync.WaitGroup
	for i, mi := range members {
		out[i].Node = mi.Name
		wg.Go(func() {
			out[i].View, out[i].Error = m.viewOf(ctx, mi.Name, path)
		})
	}
	wg.Wait()
	return out // by name, as Members are
}

// viewOf asks one node for the view at path.
func (m *Mesh) viewOf(ctx context.Context, node, path string) (json.RawMessage, string) {
	if node == m.node.Name() {
		h := m.views.Load()
		if h == nil {
			return nil, "this node serves no views yet (starting)"
		}
		r := httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil)
		rec := httptest.NewRecorder()
		(*h).ServeHTTP(rec, r)
		return viewAnswer(rec.Code, rec.Body.Bytes())
	}
	p := m.peer(node)
	if p == nil {
		return nil, "no connection to it"
	}
	if p.dead() {
		return nil, "taken for dead: it missed its heartbeats"
	}
	ctx, cancel := context.WithTimeout(ctx, viewTimeout)
	defer cancel()
	resp, err := m.do(ctx, p, http.MethodGet, viewPrefix+path, nil)
	if err != nil {
		return nil, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Sprintf("reading its answer: %v", err)
	}
	return viewAnswer(resp.StatusCode, b)
}

// viewAnswer is a view, or the error a node answered instead.
func viewAnswer(code int, b []byte) (json.RawMessage, string) {
	if code == http.StatusOK && json.Valid(b) {
		return json.RawMessage(b), ""
	}
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		return nil, e.Message
	}
	return nil, fmt.Sprintf("%d %s: %s", code, http.StatusText(code), strings.TrimSpace(string(b)))
}
