package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"
)

// MCPProtocolVersion is the MCP revision offered in the initialize request.
const MCPProtocolVersion = "2025-06-18"

// What an MCP pool hands a tool besides the call's input ([Config.MCPContext]).
const (
	// MCPContextNone: the tool gets the input as its arguments, nothing
	// else; the session's exchanges stay in the daemon. Right for
	// stateless tools (most MCP servers).
	MCPContextNone = "none"
	// MCPContextMeta: the session id, its exchanges and any reask
	// feedback travel in the request's _meta (keys below), which servers
	// that do not know them ignore.
	MCPContextMeta = "meta"
)

// The _meta keys of [MCPContextMeta], under a reverse-DNS prefix as MCP
// asks of implementation-specific metadata.
const (
	MetaSession  = "io.resilienced/session"
	MetaContext  = "io.resilienced/context"
	MetaFeedback = "io.resilienced/feedback"
)

// JSON-RPC error codes the package produces or tells apart.
const (
	CodeInvalidParams  = -32602
	CodeMethodNotFound = -32601
	// CodeUnavailable is resilienced's code (in JSON-RPC's range for
	// implementation-defined server errors) for "a dependency of mine is
	// unavailable": the agent is healthy, its model's API or database is
	// not. Native agents and MCP servers may answer it.
	CodeUnavailable = -32030
)

// ToolError is an MCP tool result with isError set: the tool ran and said
// no (bad arguments it validated itself, a file not found, a refused
// operation). The server is healthy and another agent would answer the
// same, so it is the caller's fault, not the agent's; JSON-RPC errors stay
// [*RPCError].
type ToolError struct {
	Tool string
	// Text is the text of the result's text content, joined by newlines.
	Text string
	// Content is the result's content array as the server wrote it.
	Content json.RawMessage
}

func (e *ToolError) Error() string {
	if e.Text == "" {
		return fmt.Sprintf("tool %s returned an error", e.Tool)
	}
	return fmt.Sprintf("tool %s returned an error: %s", e.Tool, e.Text)
}

// Tool is one tool an MCP server offers (tools/list), its fields raw.
type Tool struct {
	Name        string          `json:"name"`
	Title       string          `json:"title,omitempty"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"inputSchema,omitempty"`
	// OutputSchema, when the server declares one, describes structuredContent.
	OutputSchema json.RawMessage `json:"outputSchema,omitempty"`
	Annotations  json.RawMessage `json:"annotations,omitempty"`
}

// maxToolPages bounds the tools/list pages read at the handshake, so a
// server that hands out cursors forever cannot hold a spawn.
const maxToolPages = 100

// initializeMCP does MCP's handshake, then lists the server's tools: a
// pool's tool that the server does not offer is a configuration error
// found at the first spawn, not at the first call.
func (a *Agent) initializeMCP(ctx context.Context) error {
	p, _ := json.Marshal(map[string]any{
		"protocolVersion": MCPProtocolVersion,
		"capabilities":    map[string]any{},
		"clientInfo":      map[string]any{"name": "resilienced", "version": "1"},
	})
	res, err := a.request(ctx, "initialize", p)
	if err != nil {
		return fmt.Errorf("mcp initialize: %w", err)
	}
	var init struct {
		Capabilities struct {
			Tools json.RawMessage `json:"tools"`
		} `json:"capabilities"`
	}
	if err := json.Unmarshal(res, &init); err != nil {
		return fmt.Errorf("%w: mcp initialize result: %w", ErrProtocol, err)
	}
	if err := a.notify("notifications/initialized", nil); err != nil {
		return err
	}
	if len(init.Capabilities.Tools) == 0 {
		return fmt.Errorf("%w: the MCP server offers no tools (no tools capability)", ErrProtocol)
	}
	tools, err := a.listTools(ctx)
	if err != nil {
		return err
	}
	a.tools = tools
	if a.cfg.Tool == "" || a.cfg.Tool == "*" {
		return nil
	}
	names := make([]string, 0, len(tools))
	for _, t := range tools {
		if t.Name == a.cfg.Tool {
			return nil
		}
		names = append(names, t.Name)
	}
	return fmt.Errorf("%w: tool %q is not offered by the MCP server (it offers %s)", ErrNoSuchTool, a.cfg.Tool, strings.Join(names, ", "))
}

func (a *Agent) listTools(ctx context.Context) ([]Tool, error) {
	var all []Tool
	cursor := ""
	for range maxToolPages {
		var params []byte
		if cursor != "" {
			params = appendJSONString([]byte(`{"cursor":`), cursor)
			params = append(params, '}')
		}
		res, err := a.request(ctx, "tools/list", params)
		if err != nil {
			return nil, fmt.Errorf("mcp tools/list: %w", err)
		}
		var page struct {
			Tools      []Tool `json:"tools"`
			NextCursor string `json:"nextCursor"`
		}
		if err := json.Unmarshal(res, &page); err != nil {
			return nil, fmt.Errorf("%w: mcp tools/list result: %w", ErrProtocol, err)
		}
		all = append(all, page.Tools...)
		if cursor = page.NextCursor; cursor == "" {
			return all, nil
		}
	}
	return all, nil
}

// Tools returns the tools the MCP server listed at the handshake (nil for
// the native protocol). Valid once Initialize has returned.
func (a *Agent) Tools() []Tool { return a.tools }

// envelope is the native call's params, which the supervisor writes for
// every protocol; an MCP call takes its input out of it.
type envelope struct {
	Session  json.RawMessage `json:"session"`
	Context  json.RawMessage `json:"context"`
	Input    json.RawMessage `json:"input"`
	Feedback string          `json:"feedback"`
}

// mcpCallParams turns the native call envelope into tools/call params: the
// call's input is the tool's arguments (MCP requires an object). A pool
// with tool "*" takes the tools/call shape itself as input,
// {"name": …, "arguments": {…}}, so one pool can serve every tool of its
// server. progress asks the server for progress notifications under that
// token.
func (a *Agent) mcpCallParams(params json.RawMessage, progress uint64) ([]byte, string, error) {
	var env envelope
	if err := json.Unmarshal(params, &env); err != nil {
		return nil, "", fmt.Errorf("%w: the call params are not the call envelope: %w", ErrProtocol, err)
	}
	tool, args := a.cfg.Tool, env.Input
	if tool == "*" || tool == "" {
		var named struct {
			Name      string          `json:"name"`
			Arguments json.RawMessage `json:"arguments"`
		}
		if json.Unmarshal(env.Input, &named) != nil || named.Name == "" {
			return nil, "", &RPCError{Code: CodeInvalidParams, Message: `this pool serves every tool of its MCP server: the input must be {"name": TOOL, "arguments": {…}}`}
		}
		tool, args = named.Name, named.Arguments
	}
	args = bytes.TrimSpace(args)
	if len(args) > 0 && args[0] != '{' && string(args) != "null" {
		return nil, tool, &RPCError{Code: CodeInvalidParams, Message: fmt.Sprintf("the arguments of MCP tool %s must be a JSON object, not %s", tool, jsonKind(args))}
	}
	buf := make([]byte, 0, 96+len(tool)+len(args)+len(params))
	buf = append(buf, `{"name":`...)
	buf = appendJSONString(buf, tool)
	if len(args) > 0 && string(args) != "null" {
		buf = append(buf, `,"arguments":`...)
		buf = appendCompact(buf, args)
	}
	buf = append(buf, `,"_meta":{"progressToken":`...)
	buf = fmt.Appendf(buf, "%d", progress)
	if a.cfg.MCPContext == MCPContextMeta {
		if len(env.Session) > 0 && string(env.Session) != "null" {
			buf = append(buf, `,"`+MetaSession+`":`...)
			buf = appendCompact(buf, env.Session)
		}
		if len(env.Context) > 0 && string(env.Context) != "null" && string(env.Context) != "[]" {
			buf = append(buf, `,"`+MetaContext+`":`...)
			buf = appendCompact(buf, env.Context)
		}
		if env.Feedback != "" {
			buf = append(buf, `,"`+MetaFeedback+`":`...)
			buf = appendJSONString(buf, env.Feedback)
		}
	}
	buf = append(buf, "}}"...)
	return buf, tool, nil
}

// appendCompact appends a valid JSON value without line breaks, since the
// transport is one object per line.
func appendCompact(buf, raw []byte) []byte {
	if bytes.IndexByte(raw, '\n') < 0 && bytes.IndexByte(raw, '\r') < 0 {
		return append(buf, raw...)
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return append(buf, "null"...) // not reachable: raw came out of json.Unmarshal
	}
	return append(buf, b.Bytes()...)
}

func jsonKind(v []byte) string {
	switch v[0] {
	case '"':
		return "a string"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	default:
		return "a number"
	}
}

// mcpOutput turns a tools/call result into the call's output: the tool's
// structuredContent; else its single text content, as the JSON it holds
// or, when that text is not JSON (a real server's "Echo: hi"), as a JSON
// string; else the whole result. The contract checks whatever comes out,
// so a pool that wants JSON from its tool says so with a schema.
func mcpOutput(tool string, res json.RawMessage) (json.RawMessage, error) {
	var r struct {
		Content    json.RawMessage `json:"content"`
		Structured json.RawMessage `json:"structuredContent"`
		IsError    bool            `json:"isError"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		return nil, fmt.Errorf("%w: tools/call result: %w", ErrProtocol, err)
	}
	var content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if len(r.Content) > 0 {
		if err := json.Unmarshal(r.Content, &content); err != nil {
			return nil, fmt.Errorf("%w: tools/call result content: %w", ErrProtocol, err)
		}
	}
	if r.IsError {
		var texts []string
		for _, c := range content {
			if c.Type == "text" {
				texts = append(texts, c.Text)
			}
		}
		return nil, &ToolError{Tool: tool, Text: strings.Join(texts, "\n"), Content: r.Content}
	}
	if len(r.Structured) > 0 && string(r.Structured) != "null" {
		return r.Structured, nil
	}
	if len(content) == 1 && content[0].Type == "text" {
		text := bytes.TrimSpace([]byte(content[0].Text))
		if len(text) > 0 && json.Valid(text) {
			return text, nil
		}
		return appendJSONString(nil, content[0].Text), nil
	}
	return res, nil
}

// message is what the reader needs of a line that carries a method: a
// notification or a request from the agent, not a reply.
type message struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

// incoming decodes line as a message from the agent when it is one (it
// has a method), cheaply ruling out most replies first.
func incoming(line []byte) (message, bool) {
	var m message
	if !bytes.Contains(line, []byte(`"method"`)) {
		return m, false
	}
	if json.Unmarshal(line, &m) != nil || m.Method == "" {
		return m, false
	}
	return m, true
}

// handleIncoming deals with a message the agent sent on its own. A
// request is answered (ping with {}, anything else with method not found:
// the daemon offers no client capabilities); a notification is logged:
// MCP logging at its level, the rest at debug. Both go to
// [Config.OnNotification].
func (a *Agent) handleIncoming(m message) {
	if len(m.ID) > 0 && string(m.ID) != "null" {
		// Answered off the reader goroutine: a write can block on a full
		// pipe while the agent blocks writing to us.
		go a.answer(m)
		return
	}
	if m.Method == "notifications/progress" {
		a.routeProgress(m.Params)
	}
	if a.cfg.OnNotification != nil {
		a.cfg.OnNotification(m.Method, m.Params)
	}
	if m.Method != "notifications/message" {
		a.log.Debug("agent notification", "method", m.Method, "params", string(m.Params))
		return
	}
	var p struct {
		Level  string          `json:"level"`
		Logger string          `json:"logger"`
		Data   json.RawMessage `json:"data"`
	}
	if json.Unmarshal(m.Params, &p) != nil {
		return
	}
	if ok, dropped := a.logLimit.allow(); ok {
		if dropped > 0 {
			a.log.Warn("agent log messages suppressed", "count", dropped)
		}
		msg := string(p.Data)
		var s string
		if json.Unmarshal(p.Data, &s) == nil {
			msg = s
		}
		a.log.Log(context.Background(), mcpLevel(p.Level), msg, "source", "mcp", "logger", p.Logger)
	}
}

func (a *Agent) answer(m message) {
	buf := append([]byte(`{"jsonrpc":"2.0","id":`), m.ID...)
	if m.Method == "ping" {
		buf = append(buf, `,"result":{}}`+"\n"...)
	} else {
		buf = fmt.Appendf(buf, `,"error":{"code":%d,"message":`, CodeMethodNotFound)
		buf = appendJSONString(buf, "method not found: "+m.Method)
		buf = append(buf, "}}\n"...)
	}
	if err := a.write(buf); err != nil {
		a.log.Debug("answering an agent request", "method", m.Method, "err", err)
	}
}

// mcpLevel maps MCP's syslog levels onto slog's.
func mcpLevel(l string) slog.Level {
	switch l {
	case "debug":
		return slog.LevelDebug
	case "info", "notice":
		return slog.LevelInfo
	case "warning":
		return slog.LevelWarn
	default: // error, critical, alert, emergency
		return slog.LevelError
	}
}

// Terminate asks the process to end as its protocol says. An MCP server's
// stdin is closed first (the stdio transport's shutdown: a server exits
// at the end of its input) and it has up to grace to exit before SIGTERM;
// a native agent gets SIGTERM at once. Terminate returns when the process
// has exited or SIGTERM has been sent; killing what is left (the cgroup)
// stays with the owner.
func (a *Agent) Terminate(grace time.Duration) {
	if a.cfg.Protocol == ProtocolMCP {
		// Not under writeMu: a write blocked on a full pipe would hold
		// it, and closing the file is what unblocks that write.
		a.stdin.Close()
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-a.done:
			return
		case <-t.C:
		}
	}
	if err := a.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		a.log.Debug("SIGTERM", "err", err)
	}
}
