// Package mcp is the daemon's MCP front door: every pool served as MCP
// tools over Streamable HTTP, so that any MCP client (the official SDKs,
// agent frameworks) can call a pool.
//
// Endpoints: the aggregate one (config mcp.path, default /mcp) lists every
// pool's tools, a name that two pools share prefixed by its pool
// ("pool.tool"); /pools/{pool}/mcp lists one pool's. A native pool is one
// tool named after the pool whose arguments are the call's input; an MCP
// pool re-exports its server's tool (tool: NAME) or all of them (tool: "*"),
// as the server described them at its latest handshake.
//
// Every tool call goes through the daemon's normal call path ([Pools], which
// cmd/resilienced implements with the supervisor): contract, retries on a
// spare, sessions. The client's MCP session belongs to the daemon, not to
// any agent: its Mcp-Session-Id is the daemon session "mcp-<id>", so when
// the agent serving it dies mid-call the call is retried on another agent
// and the session goes on, with its context. A client that asks for
// progress (a progressToken) gets the agent's progress under its token
// ([Call.Progress]); a client that cancels (notifications/cancelled, or a
// closed stateless POST) ends the handler's context, which cancels the
// call in the daemon down to the child server.
//
// A [Server] is an http.Handler: cmd/resilienced serves one on the TCP
// address of mcp.listen, and another on the API's unix socket under /v1,
// which `resilientctl mcp` (package mcprelay) relays to stdio hosts.
//
// The protocol itself (initialize, sessions, SSE or JSON answers, ping,
// cancellation, the stateless 2026 revision) is github.com/modelcontextprotocol/go-sdk's
// server: the official SDK, kept to its spec by its own conformance tests,
// rather than a second implementation here. The SDK's HTTP handler serves
// one era or the other, so each endpoint has both and routes a request by
// its MCP-Protocol-Version; a session-era client that dropped its session
// id is served statelessly. This package adds the tools, the call mapping
// and the edge: Origin checks, bearer tokens, a bound on requests in
// flight, protocol versions the SDK speaks, tool arguments that are
// objects.
//
// Every MCP operation is measured for an [Observer] under the
// OpenTelemetry MCP semantic conventions (method, tool, error type,
// protocol version), and runs with the caller's W3C trace context from
// params._meta.traceparent (package tracectx), so the daemon's log lines
// of a call carry its trace_id.
package mcp
