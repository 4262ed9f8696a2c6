package api

import (
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/resilienced/resilienced/internal/contract"
	"github.com/resilienced/resilienced/internal/leakcheck"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// The hand-built answer to a call decodes as the CallResponse WriteJSON
// writes, and goes out with its length.
func TestWriteCallResponse(t *testing.T) {
	leakcheck.Check(t)
	for _, res := range []*supervisor.CallResult{
		{Output: json.RawMessage(`{"answer":"Paris","n":[1, 2]}`), Agent: "echo-1", Attempts: 1},
		{Output: json.RawMessage(`"<b>&</b>"`), Agent: "echo-2", Attempts: 2, Seq: 7},
		{Output: json.RawMessage(`{"a":` + "\n" + `1}`), Agent: "echo-3", Attempts: 1},
		{Output: json.RawMessage(`null`), Cached: true},
		{Output: nil, Agent: `we"ird`, Attempts: 1},
		{Output: json.RawMessage(`1`), Agent: "echo-4", Attempts: 2, Violations: []*contract.Violation{contract.NewViolation(contract.CodeSchema, "missing answer")}},
	} {
		want := CallResponse{Output: res.Output, Agent: res.Agent, Attempts: res.Attempts, Cached: res.Cached, Seq: res.Seq, Violations: res.Violations}
		ref := httptest.NewRecorder()
		WriteJSON(ref, 200, want)
		got := httptest.NewRecorder()
		writeCallResponse(got, res)
		if got.Code != 200 || got.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: status %d, Content-Type %q", res.Agent, got.Code, got.Header().Get("Content-Type"))
		}
		if cl := got.Header().Get("Content-Length"); cl != "" && cl != itoa(got.Body.Len()) {
			t.Errorf("%s: Content-Length %s for %d bytes", res.Agent, cl, got.Body.Len())
		}
		var a, b any
		if err := json.Unmarshal(got.Body.Bytes(), &a); err != nil {
			t.Fatalf("%s: %q: %v", res.Agent, got.Body, err)
		}
		json.Unmarshal(ref.Body.Bytes(), &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: got %s, want %s", res.Agent, got.Body, ref.Body)
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
