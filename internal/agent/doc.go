// Package agent runs one agent process and speaks to it.
//
// An [Agent] is a process started from an argv (no shell) with its stdin and
// stdout as a JSON-RPC 2.0 transport, one object per line: the framing of
// MCP's stdio transport. Its stderr is its log, captured line by line into
// the daemon's log under the agent's id and rate-limited so a noisy agent
// cannot flood the journal.
//
// The process can be started directly inside a cgroup (clone into cgroup,
// [Config.CgroupFD]) so no instant of it runs outside its limits; without a
// cgroup it gets its own process group so the whole tree can still be
// signalled.
//
// One call is in flight per agent at a time. A reply line longer than
// [Config.MaxLineBytes] is never buffered whole: reading stops at the limit
// and the call fails with [ErrLineTooLong]; the agent is then unusable and
// its owner kills it. The package knows nothing of contracts or restarts:
// it reports what happened, with typed errors, and the supervisor decides.
//
// Two protocols are spoken: the native one ("jsonrpc": initialize, ping and
// the pool's call method) and MCP ("mcp": initialize, then
// notifications/initialized and tools/list, and calls become tools/call).
// Either way the caller hands [Agent.Send] the native call envelope; for
// MCP the envelope's input becomes the tool's arguments, so the supervisor
// writes one envelope whatever its agents speak. An MCP tool's own error
// (isError) is a [*ToolError], the caller's fault; a JSON-RPC error reply
// is an [*RPCError] with its code (-32602: the caller's arguments). The
// agent's own messages are not replies: notifications are logged (MCP
// logging at its level, through the agent's slog logger) and handed to
// [Config.OnNotification]; its requests are answered (ping).
//
// A call's progress notifications (MCP's notifications/progress under the
// call's progress token, its request id) go to the callback given to
// [Agent.Send]. [Pending.Cancel] sends MCP's notifications/cancelled for
// the call; progress the server still reports on it then closes
// [Pending.Running], which tells its owner the server ignores the cancel.
// A request closed before its reply came is remembered, and its late
// reply dropped, so the agent stays in step.
//
// Every string written to an agent is quoted as JSON (appendJSONString or
// encoding/json), never with Go's quoting, which is not JSON.
package agent
