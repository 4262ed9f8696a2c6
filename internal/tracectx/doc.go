// Package tracectx carries a W3C trace context (the traceparent an MCP
// client puts in a request's params._meta, or an HTTP traceparent header)
// through a call's context.Context into the daemon's logs: [Handler] adds
// trace_id and span_id to every record logged with that context, so one
// call's lines in the front door and the daemon can be found by the
// client's trace.
//
// It parses and carries; it makes no spans of its own.
package tracectx
