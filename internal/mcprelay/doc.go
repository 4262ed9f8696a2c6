// Package mcprelay relays MCP between a stdio host and a Streamable HTTP
// endpoint: it is `resilientctl mcp`, the way for hosts that can launch
// only stdio servers (Claude Desktop, IDEs) to reach the daemon's MCP front
// door over its unix socket.
//
// It relays messages, not meaning: each line the host writes on stdin (one
// JSON-RPC message, MCP's stdio framing) is POSTed to the endpoint as it
// is, and every message of the answer, JSON or an SSE stream, is written
// to stdout as one line; the server's own messages (notifications, its
// requests) come on a GET stream opened once the session has its id. The
// relay keeps what the transport needs and the host cannot: the
// Mcp-Session-Id minted at initialize, and the negotiated
// MCP-Protocol-Version, sent on every request after it.
//
// A relay rather than the go-sdk's client and server back to back: the
// session stays one session, between the host and the daemon. Protocol
// versions, capabilities, progress, cancellation and whatever a later
// revision adds pass through without a line of code here, where a client
// and a server joined in the middle would negotiate twice and forward
// each method by hand. The go-sdk's client transport, used alone, would
// not send the protocol version (the SDK's client sets it), nor replay a
// lost session.
//
// When the daemon no longer knows the session (404: it restarted, or the
// session idled out), the relay opens a new one by replaying the host's
// initialize and notifications/initialized, and sends the message again:
// the host never sees the change. A daemon that cannot be reached is said
// on stderr, and each request meanwhile gets a JSON-RPC error naming the
// socket. At the end of stdin the relay waits for the answers still due,
// deletes its session and returns; when its context ends it abandons them.
package mcprelay
