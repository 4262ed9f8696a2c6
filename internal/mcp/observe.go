package mcp

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/resilienced/resilienced/internal/tracectx"
)

// Observer takes the front door's measurements, as the OpenTelemetry MCP
// semantic conventions name them (internal/metrics implements it).
type Observer interface {
	// MCPOperation: one JSON-RPC request or notification handled, in d:
	// mcp.method.name, gen_ai.tool.name (tools/call only), error.type
	// ("" when it succeeded) and mcp.protocol.version.
	MCPOperation(method, tool, errorType, protocolVersion string, d time.Duration)
	// MCPSessionOpened and MCPSessionClosed bracket one MCP session (the
	// session era's initialize to its end).
	MCPSessionOpened()
	MCPSessionClosed(protocolVersion string, d time.Duration)
}

// Values of error.type and gen_ai.tool.name that are not codes or names.
const (
	// errorTool: a tools/call whose result has isError (the convention's value).
	errorTool = "tool_error"
	// other: the convention's catch-all, for an error without a JSON-RPC
	// code, and for a tool name no pool serves (a client looping over
	// random names must not mint a time series per name).
	other = "_OTHER"
)

// metaTraceparent is where MCP carries W3C trace context: params._meta.
const metaTraceparent = "traceparent"

// observe is the endpoint's receiving middleware: every JSON-RPC message
// the SDK hands to the server (a valid MCP request or notification) is
// timed and labelled for the Observer, and runs with the caller's trace
// context (params._meta.traceparent, else the HTTP traceparent header), so
// the daemon's log lines of that call carry trace_id and span_id.
func (ep *endpoint) observe(next sdk.MethodHandler) sdk.MethodHandler {
	return func(ctx context.Context, method string, req sdk.Request) (sdk.Result, error) {
		start := time.Now()
		ctx = withTrace(ctx, req)
		res, err := next(ctx, method, req)
		d := time.Since(start)

		tool := ""
		if p, ok := req.GetParams().(*sdk.CallToolParamsRaw); ok && p != nil && method == "tools/call" {
			tool = other
			if _, known := ep.lookup(p.Name); known {
				tool = p.Name
			}
		}
		errType := errorType(res, err)
		version := protocolVersion(req, res)
		if o := ep.s.opts.Observer; o != nil {
			o.MCPOperation(method, tool, errType, version, d)
		}
		ep.s.log.DebugContext(ctx, "mcp request", "endpoint", ep.name(), "method", method, "tool", tool, "error_type", errType, "protocol", version, "ms", float64(d.Microseconds())/1000)
		if method == "initialize" && err == nil {
			ep.s.sessionOpened(req.GetSession(), version)
		}
		return res, err
	}
}

func (ep *endpoint) name() string {
	if ep.pool == "" {
		return ep.s.opts.Path
	}
	return "/pools/" + ep.pool + "/mcp"
}

// withTrace returns ctx carrying the request's trace context, if it has a
// valid one; an invalid one is ignored, as W3C trace context says.
func withTrace(ctx context.Context, req sdk.Request) context.Context {
	var tp string
	if p := req.GetParams(); !isNil(p) {
		tp, _ = p.GetMeta()[metaTraceparent].(string)
	}
	if tp == "" {
		if ex := req.GetExtra(); ex != nil && ex.Header != nil {
			tp = ex.Header.Get("traceparent")
		}
	}
	if tp == "" {
		return ctx
	}
	tc, err := tracectx.Parse(tp)
	if err != nil {
		return ctx
	}
	return tracectx.With(ctx, tc)
}

// isNil reports whether p is absent: a request without params has a
// typed nil, whose GetMeta would dereference it.
func isNil(p sdk.Params) bool {
	if p == nil {
		return true
	}
	v := reflect.ValueOf(p)
	return v.Kind() == reflect.Pointer && v.IsNil()
}

// errorType is error.type for an operation's outcome: "" for a success,
// tool_error for a tool result with isError, the JSON-RPC error code, or
// _OTHER.
func errorType(res sdk.Result, err error) string {
	if err != nil {
		var je *jsonrpc.Error
		if errors.As(err, &je) {
			return strconv.FormatInt(je.Code, 10)
		}
		return other
	}
	if r, ok := res.(*sdk.CallToolResult); ok && r.IsError {
		return errorTool
	}
	return ""
}

// protocolVersion is mcp.protocol.version: what initialize (or
// server/discover) settled, else what the session or the stateless
// request's _meta said.
func protocolVersion(req sdk.Request, res sdk.Result) string {
	if r, ok := res.(*sdk.InitializeResult); ok && r != nil {
		return r.ProtocolVersion
	}
	if ss, ok := req.GetSession().(*sdk.ServerSession); ok && ss != nil {
		if ip := ss.InitializeParams(); ip != nil {
			return ip.ProtocolVersion
		}
	}
	return ""
}

// sessionOpened counts an initialized session until it ends.
func (s *Server) sessionOpened(sess sdk.Session, version string) {
	ss, ok := sess.(*sdk.ServerSession)
	o := s.opts.Observer
	if !ok || o == nil {
		return
	}
	start := time.Now()
	o.MCPSessionOpened()
	go func() {
		ss.Wait()
		o.MCPSessionClosed(version, time.Since(start))
	}()
}
