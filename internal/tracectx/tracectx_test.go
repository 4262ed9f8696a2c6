package tracectx

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	const trace, span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	good := map[string]Context{
		"00-" + trace + "-" + span + "-01":           {trace, span, "01"},
		" 00-" + trace + "-" + span + "-00 ":         {trace, span, "00"},
		"01-" + trace + "-" + span + "-01-more-data": {trace, span, "01"}, // a later version may add fields
	}
	for in, want := range good {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":                                   "shorter",
		"00-" + trace + "-" + span:           "shorter",
		"00-" + trace + "-" + span + "-01-x": "exactly 55",
		"ff-" + trace + "-" + span + "-01":   "version",
		"0x-" + trace + "-" + span + "-01":   "version",
		"00-" + strings.ToUpper(trace) + "-" + span + "-01":   "trace-id",
		"00-" + strings.Repeat("0", 32) + "-" + span + "-01":  "trace-id",
		"00-" + trace + "-" + strings.Repeat("0", 16) + "-01": "parent-id",
		"00-" + trace + "-" + span + "-zz":                    "trace-flags",
		"00_" + trace + "_" + span + "_01":                    "dashes",
		"01-" + trace + "-" + span + "-01x":                   "dash",
	}
	for in, why := range bad {
		_, err := Parse(in)
		if !errors.Is(err, ErrTraceparent) || !strings.Contains(err.Error(), why) {
			t.Errorf("Parse(%q): %v, want ErrTraceparent saying %q", in, err, why)
		}
	}
	// Hostile input is not echoed whole.
	if _, err := Parse(strings.Repeat("a", 10000)); len(err.Error()) > 200 {
		t.Errorf("error of %d bytes for a long input", len(err.Error()))
	}
}

func TestHandlerAddsTheCallsTrace(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewHandler(slog.NewTextHandler(&buf, nil))).With("component", "x")
	tc := Context{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7", Flags: "01"}
	log.InfoContext(With(context.Background(), tc), "traced")
	log.InfoContext(context.Background(), "untraced")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines %q", lines)
	}
	if !strings.Contains(lines[0], "trace_id="+tc.TraceID) || !strings.Contains(lines[0], "span_id="+tc.SpanID) || !strings.Contains(lines[0], "component=x") {
		t.Errorf("traced line %q", lines[0])
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Errorf("untraced line %q", lines[1])
	}
}
