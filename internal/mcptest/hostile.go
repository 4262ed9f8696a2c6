package mcptest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Hostile is one malformed or hostile request to an MCP Streamable HTTP
// endpoint, with the answer the transport sections of the MCP
// specification (2025-06-18, 2025-11-25; 2026-07-28 for its stateless
// requests) give it.
type Hostile struct {
	Class  string
	Method string
	Header http.Header
	Body   []byte
	// Status is the HTTP status the answer must have.
	Status int
	// Code, when not 0, is the JSON-RPC error code the answer must carry
	// (in a JSON body or an SSE message).
	Code int64
}

// HostileOptions shape [HostileRequests].
type HostileOptions struct {
	// Session is a live Mcp-Session-Id of the endpoint (session era).
	Session string
	// Tool is a tool the endpoint serves whose arguments must be an
	// object; BadArgs are arguments it refuses with -32602 (nil: none
	// tested beyond a non-object).
	Tool    string
	BadArgs any
	// MaxBodyBytes is the endpoint's body bound (413 beyond).
	MaxBodyBytes int
}

const (
	accept  = "application/json, text/event-stream"
	ctJSON  = "application/json"
	era2025 = "2025-11-25"
	era2026 = "2026-07-28"
)

// HostileRequests returns n requests cycling through every class.
func HostileRequests(n int, o HostileOptions) []Hostile {
	classes := hostileClasses(o)
	out := make([]Hostile, 0, n)
	for i := 0; len(out) < n; i++ {
		h := classes[i%len(classes)]
		// Ids vary, as a fuzzing client's would.
		h.Body = bytes.ReplaceAll(h.Body, []byte(`"id":1,`), fmt.Appendf(nil, `"id":%d,`, i+1))
		out = append(out, h)
	}
	return out
}

func hostileClasses(o HostileOptions) []Hostile {
	hdr := func(kv ...string) http.Header {
		h := http.Header{"Accept": {accept}, "Content-Type": {ctJSON}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				h.Del(kv[i])
			} else {
				h.Set(kv[i], kv[i+1])
			}
		}
		return h
	}
	sess := func(kv ...string) http.Header {
		return hdr(append([]string{"Mcp-Session-Id", o.Session, "MCP-Protocol-Version", era2025}, kv...)...)
	}
	// era26 is a stateless-era request: the header and _meta name the revision.
	meta26 := `"_meta":{"io.modelcontextprotocol/protocolVersion":"` + era2026 + `","io.modelcontextprotocol/clientInfo":{"name":"hostile","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}`
	era26 := func(name string) http.Header {
		return hdr("MCP-Protocol-Version", era2026, "Mcp-Method", "tools/call", "Mcp-Name", name)
	}
	call := func(name string, args any) []byte {
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{"name": name, "arguments": args}})
		return b
	}
	call26 := func(name string, args string) []byte {
		return []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":` + quote(name) + `,"arguments":` + args + `,` + meta26 + `}}`)
	}
	list := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
	init := []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"h","version":"1"}}}`)
	giant := []byte(`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + strings.Repeat("x", o.MaxBodyBytes+1) + `"}}`)

	hs := []Hostile{
		// Transport: §Streamable HTTP of the specification.
		{Class: "bad JSON", Method: "POST", Header: sess(), Body: []byte(`{"jsonrpc":"2.0","id":1,`), Status: 400},
		{Class: "bad JSON without a session", Method: "POST", Header: hdr(), Body: []byte(`{nope`), Status: 400},
		{Class: "not JSON-RPC 2.0", Method: "POST", Header: sess(), Body: []byte(`{"jsonrpc":"1.0","id":1,"method":"tools/list"}`), Status: 400},
		{Class: "unknown MCP-Protocol-Version", Method: "POST", Header: sess("MCP-Protocol-Version", "1999-01-01"), Body: list, Status: 400},
		{Class: "malformed MCP-Protocol-Version", Method: "POST", Header: sess("MCP-Protocol-Version", "latest"), Body: list, Status: 400},
		{Class: "giant body", Method: "POST", Header: sess(), Body: giant, Status: 413},
		{Class: "giant body without a session", Method: "POST", Header: hdr(), Body: giant, Status: 413},
		{Class: "foreign Origin", Method: "POST", Header: hdr("Origin", "https://evil.example"), Body: init, Status: 403},
		{Class: "opaque Origin", Method: "POST", Header: hdr("Origin", "null"), Body: init, Status: 403},
		{Class: "unknown session id", Method: "POST", Header: sess("Mcp-Session-Id", "no-such-session"), Body: list, Status: 404},
		{Class: "unknown session id, GET", Method: "GET", Header: sess("Mcp-Session-Id", "no-such-session", "Accept", "text/event-stream"), Status: 404},
		{Class: "unknown session id, DELETE", Method: "DELETE", Header: sess("Mcp-Session-Id", "no-such-session"), Status: 404},
		{Class: "GET without a session id", Method: "GET", Header: hdr("Accept", "text/event-stream"), Status: 400},
		{Class: "DELETE without a session id", Method: "DELETE", Header: hdr(), Status: 400},
		{Class: "PUT", Method: "PUT", Header: sess(), Body: list, Status: 405},
		{Class: "PATCH", Method: "PATCH", Header: sess(), Body: list, Status: 405},
		{Class: "GET in the stateless era", Method: "GET", Header: hdr("MCP-Protocol-Version", era2026, "Accept", "text/event-stream"), Status: 405},
		{Class: "wrong Content-Type", Method: "POST", Header: sess("Content-Type", "text/plain"), Body: list, Status: 415},
		{Class: "no Content-Type", Method: "POST", Header: sess("Content-Type", ""), Body: list, Status: 415},
		{Class: "Accept without SSE", Method: "POST", Header: sess("Accept", "application/json"), Body: list, Status: 400},
		{Class: "Accept of neither", Method: "POST", Header: sess("Accept", "text/html"), Body: list, Status: 400},
		// JSON-RPC errors in a 200 answer: the request reached MCP.
		// A method MCP does not have is refused by the transport: "if the
		// server cannot accept the input, it MUST return an HTTP error
		// status code (e.g., 400 Bad Request)".
		{Class: "unknown method", Method: "POST", Header: sess(), Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/explode","params":{}}`), Status: 400},
		{Class: "unknown tool", Method: "POST", Header: sess(), Body: call("no-such-tool", map[string]any{}), Status: 200, Code: -32602},
		{Class: "tool name of 10 KiB", Method: "POST", Header: sess(), Body: call(strings.Repeat("a", 10<<10), map[string]any{}), Status: 200, Code: -32602},
		{Class: "arguments not an object", Method: "POST", Header: sess(), Body: call(o.Tool, "just a string"), Status: 200, Code: -32602},
		{Class: "params not an object", Method: "POST", Header: sess(), Body: []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1,2]}`), Status: 200, Code: -32602},
		// The stateless era answers a request's error with a 400 that
		// carries the JSON-RPC error.
		{Class: "unknown tool, stateless era", Method: "POST", Header: era26("no-such-tool"), Body: call26("no-such-tool", `{}`), Status: 400, Code: -32602},
		{Class: "stateless era without its Mcp-Method header", Method: "POST", Header: hdr("MCP-Protocol-Version", era2026), Body: call26(o.Tool, `{}`), Status: 400, Code: -32020},
		{Class: "unknown tool, no session id", Method: "POST", Header: hdr(), Body: call("no-such-tool", map[string]any{}), Status: 200, Code: -32602},
		// Batches were removed from the protocol in 2025-06-18.
		{Class: "batch array", Method: "POST", Header: sess(), Body: []byte(`[` + string(list) + `,` + string(list) + `]`), Status: 400},
		{Class: "empty batch", Method: "POST", Header: sess(), Body: []byte(`[]`), Status: 400},
	}
	if o.BadArgs != nil {
		hs = append(hs, Hostile{Class: "arguments the tool refuses", Method: "POST", Header: sess(), Body: call(o.Tool, o.BadArgs), Status: 200, Code: -32602})
	}
	return hs
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

// Send makes the request to url and checks the answer against h: the
// error says what differed.
func (h Hostile) Send(ctx context.Context, c *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, h.Method, url, bytes.NewReader(h.Body))
	if err != nil {
		return err
	}
	req.Header = h.Header.Clone()
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", h.Class, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != h.Status {
		return fmt.Errorf("%s: status %d, want %d: %.200s", h.Class, resp.StatusCode, h.Status, body)
	}
	if h.Code == 0 {
		return nil
	}
	code, ok := rpcErrorCode(body)
	if !ok || code != h.Code {
		return fmt.Errorf("%s: JSON-RPC error %d (found %v), want %d: %.300s", h.Class, code, ok, h.Code, body)
	}
	return nil
}

// rpcErrorCode finds the JSON-RPC error code of an answer, JSON or SSE.
func rpcErrorCode(body []byte) (int64, bool) {
	msgs := [][]byte{body}
	if !bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		msgs = nil
		for _, l := range bytes.Split(body, []byte("\n")) {
			if d, ok := bytes.CutPrefix(l, []byte("data:")); ok {
				msgs = append(msgs, bytes.TrimSpace(d))
			}
		}
	}
	for _, m := range msgs {
		var r struct {
			Error *struct {
				Code int64 `json:"code"`
			} `json:"error"`
		}
		if json.Unmarshal(m, &r) == nil && r.Error != nil {
			return r.Error.Code, true
		}
	}
	return 0, false
}
