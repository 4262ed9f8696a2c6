// Package api is the daemon's local API: HTTP/JSON over a unix socket, and
// the Go client that resilientctl (and any program) uses to call it.
//
// The socket is created mode 0660 with group "resilienced" when that group
// exists, else 0600. Every connection's peer credentials (SO_PEERCRED) are
// checked: root, the daemon's own user and members of the socket's group
// are served; anyone else gets 403 with a message saying how to get access.
//
// Errors are JSON, {"error": {"code": "...", "message": "..."}}, with a
// fitting HTTP status; the client turns them back into [*Error] values that
// callers can test with errors.As. `curl --unix-socket` works:
//
//	curl --unix-socket /run/resilienced/resilienced.sock http://x/v1/status
//
// Routes (all JSON):
//
//	GET  /v1/version
//	GET  /v1/status
//	GET  /v1/agents[?pool=P]
//	POST /v1/pools/{pool}/call      {"input":…, "session":"…", "key":"…", "timeout":"5s"}
//	POST /v1/pools/{pool}/call/stream[?inflight=N]   (NDJSON calls in, NDJSON answers out)
//	POST /v1/pools/{pool}/restart
//	POST /v1/pools/{pool}/scale     {"replicas": N}
//	GET  /v1/pools/{pool}/ring
//	POST /v1/agents/{id}/restart
//	POST /v1/agents/{id}/drain
//	GET  /v1/events[?since=5m&follow=1]   (newline-delimited JSON)
//	GET  /v1/sessions[?pool=P]
//	GET  /v1/sessions/{id}[?pool=P]
//	*    /v1/mcp, /v1/pools/{pool}/mcp   (the MCP front door, Streamable HTTP; added by cmd/resilienced)
//
// [Client] keeps its connections to the socket alive and, unlike
// http.Transport, writes each request and reads its answer on the calling
// goroutine: a call costs the client two goroutine switches fewer. A
// connection the daemon closed (a restart) is noticed on the next write,
// before anything is sent, and the request goes out on a new one; nothing
// else is retried, so a call is never sent twice.
//
// The call stream carries many calls over one full-duplex HTTP/1.1
// exchange, as gRPC streams or Redis pipelining do: one {"id":…, "input":…}
// object per line of the chunked request body, one answer per line of the
// response as each call completes, in any order. Calls of a stream run
// concurrently, at most N (?inflight=, default 64); beyond that the daemon
// reads no further. Answers ready together share one write, and so do calls
// sent together by [CallStream.Send]: under load many calls cost one system
// call each way. The single call costs an HTTP request and answer, and
// their system calls and wake-ups, per call. docs/PROTOCOL.md describes the
// lines.
//
// The server is net/http's, as tailscale's LocalAPI is: a connection's
// peer credentials are read once, when it is accepted (ConnContext), and
// the peer judged then. A handler's headers reach the client as it set
// them; an error whose chain has a RetryAfter() time.Duration method (the
// breaker's, open) is answered with Retry-After, which the client gives
// back as [Error].Retry. Single calls cost net/http's per-request work
// (BenchmarkAPI reports them beside the stream's, in one run); the high
// rate is the call stream's. The client reads a plain 200 answer without
// http.ReadResponse. Call bodies, stream lines and answers of the plain
// shape are decoded by hand (package jsonscan), and anything else by
// encoding/json, which their fuzz tests hold the hand-written decoders to.
//
// A call's context is its request's: a client that closes its connection
// (or a stream's), or a call whose timeout passes, cancels the call in the
// supervisor, which tells the agent to stop and keeps or replaces it,
// charging the pool nothing (docs/PROTOCOL.md, "Progress and
// cancellation").
//
// Other packages add routes with [Server.Handle] (isolation, telemetry,
// chaos, the Arbiter).
package api
