// Package metrics exposes resilienced's Prometheus metrics (names
// resilienced_*): agents by state, restarts, violations by code, calls by
// outcome, call latency, recovery time by fault kind, breaker state.
//
// Counters and histograms are fed by the supervisor's event and call
// hooks ([Metrics.Event], [Metrics.Call]); gauges are read from the
// supervisor at scrape time, so they are never stale.
//
// The MCP front door's operations and sessions are measured under the
// OpenTelemetry MCP semantic conventions' names
// (mcp_server_operation_duration_seconds, mcp_server_session_duration_seconds).
package metrics
