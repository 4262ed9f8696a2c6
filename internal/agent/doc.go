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
// notifications/initialized, and calls become tools/call).
package agent
