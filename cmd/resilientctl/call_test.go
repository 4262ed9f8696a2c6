package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/resilienced/resilienced/internal/api"
)

func TestCallStreamFromStdin(t *testing.T) {
	sock := chaosDaemon(t)
	in := strings.Join([]string{
		`{"id":1,"input":"a"}`,
		``,
		`{"id":"two","input":{"b":2}}`,
		`{"id":3,"input":`,
		`{"id":4,"input":"d"}`,
	}, "\n") // the last line without its newline
	var out bytes.Buffer
	err := streamCalls(context.Background(), api.NewClient(sock), "echo", 2, strings.NewReader(in), &out)
	if err == nil || !strings.Contains(err.Error(), "1 of 4 calls failed") {
		t.Fatalf("got %v, want 1 of 4 calls failed", err)
	}
	byID := map[string]api.StreamAnswer{}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var a api.StreamAnswer
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("answer %q: %v", l, err)
		}
		byID[string(a.ID)] = a
	}
	for _, id := range []string{`1`, `"two"`, `4`} {
		if a, ok := byID[id]; !ok || a.Error != nil || a.CallResponse == nil || !strings.Contains(string(a.Output), "answer") {
			t.Errorf("id %s: %+v", id, a)
		}
	}
	// The malformed line is numbered as in the input, blank lines counted.
	if a := byID[""]; a.Error == nil || a.Line != 4 || a.Error.Code != api.CodeBadRequest {
		t.Errorf("malformed line: %+v", a)
	}
	// An unknown pool fails before anything is read.
	err = streamCalls(context.Background(), api.NewClient(sock), "nope", 0, strings.NewReader(in), &out)
	var e *api.Error
	if !errors.As(err, &e) || e.Code != api.CodeUnknownPool {
		t.Fatalf("unknown pool: %v", err)
	}
}
