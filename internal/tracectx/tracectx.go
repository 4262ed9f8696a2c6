package tracectx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// ErrTraceparent: a traceparent that is not the W3C format.
var ErrTraceparent = errors.New("tracectx: bad traceparent")

// Context is one W3C trace context: the caller's trace and its span.
type Context struct {
	TraceID string // 32 lowercase hex digits, not all zero
	SpanID  string // the caller's span (parent-id): 16 lowercase hex digits, not all zero
	Flags   string // 2 hex digits (01: sampled)
}

// Parse parses a traceparent header value
// (https://www.w3.org/TR/trace-context/#traceparent-header): version "00"
// is exactly version-traceid-spanid-flags; a later version may append
// fields after a dash, which are ignored, as the recommendation says.
func Parse(s string) (Context, error) {
	s = strings.TrimSpace(s)
	bad := func(why string) (Context, error) {
		return Context{}, fmt.Errorf("%w %q: %s", ErrTraceparent, clip(s), why)
	}
	if len(s) < 55 {
		return bad("shorter than version-traceid-spanid-flags (55 characters)")
	}
	version, trace, span, flags := s[0:2], s[3:35], s[36:52], s[53:55]
	if s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return bad("fields are not separated by dashes at 2, 35 and 52")
	}
	switch {
	case !isHex(version) || version == "ff":
		return bad("version is not 00..fe in lowercase hex")
	case version == "00" && len(s) != 55:
		return bad("version 00 has exactly 55 characters")
	case version != "00" && len(s) > 55 && s[55] != '-':
		return bad("a field after flags does not start with a dash")
	case !isHex(trace) || allZero(trace):
		return bad("trace-id is not 32 lowercase hex digits, not all zero")
	case !isHex(span) || allZero(span):
		return bad("parent-id is not 16 lowercase hex digits, not all zero")
	case !isHex(flags):
		return bad("trace-flags is not 2 lowercase hex digits")
	}
	return Context{TraceID: trace, SpanID: span, Flags: flags}, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool { return strings.Trim(s, "0") == "" }

// clip keeps an error message about hostile input short.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

type key struct{}

// With returns ctx carrying tc.
func With(ctx context.Context, tc Context) context.Context {
	return context.WithValue(ctx, key{}, tc)
}

// From returns the trace context ctx carries, if any.
func From(ctx context.Context) (Context, bool) {
	tc, ok := ctx.Value(key{}).(Context)
	return tc, ok
}

// Attrs are tc as log attributes (trace_id, span_id).
func (tc Context) Attrs() []slog.Attr {
	return []slog.Attr{slog.String("trace_id", tc.TraceID), slog.String("span_id", tc.SpanID)}
}

// Handler adds trace_id and span_id to each record whose context carries a
// trace context; records without one pass unchanged.
type Handler struct{ slog.Handler }

// NewHandler wraps h.
func NewHandler(h slog.Handler) Handler { return Handler{h} }

// Handle implements slog.Handler.
func (h Handler) Handle(ctx context.Context, r slog.Record) error {
	if tc, ok := From(ctx); ok {
		r = r.Clone()
		r.AddAttrs(tc.Attrs()...)
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h Handler) WithAttrs(as []slog.Attr) slog.Handler { return Handler{h.Handler.WithAttrs(as)} }

// WithGroup implements slog.Handler.
func (h Handler) WithGroup(g string) slog.Handler { return Handler{h.Handler.WithGroup(g)} }
