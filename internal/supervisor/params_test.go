package supervisor

import (
	"encoding/json"
	"reflect"
	"testing"
)

// The hand-built params must be exactly what encoding/json would send, and
// one line even when the input was pretty-printed.
func TestParamsEncodeMatchesEncodingJSON(t *testing.T) {
	s := "conv-\"1\""
	for _, cp := range []callParams{
		{Input: json.RawMessage(`"hi"`), Context: []contextEntry{}},
		{Session: &s, Input: json.RawMessage("{\n  \"q\": [1, 2]\n}"), Feedback: "bad \"answer\"\n", Context: []contextEntry{
			{Input: json.RawMessage(`1`), Output: json.RawMessage(`{"answer":"a"}`)},
			{Input: json.RawMessage("[\n1]"), Output: json.RawMessage(`{"answer":"b\nc"}`)},
		}},
	} {
		got := cp.encode(nil)
		if !json.Valid(got) {
			t.Fatalf("invalid JSON: %s", got)
		}
		for _, b := range got {
			if b == '\n' {
				t.Fatalf("line break in %s", got)
			}
		}
		want, _ := json.Marshal(cp)
		var g, w any
		json.Unmarshal(got, &g)
		json.Unmarshal(want, &w)
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	}
}
