package mcp

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
)

// A native pool's tool shows the pool's input_schema as its inputSchema
// when it describes an object (what MCP takes), and any object otherwise.
func TestNativePoolInputSchema(t *testing.T) {
	ts, fp := startFront(t)
	schema := `{"type":"object","required":["q"],"properties":{"q":{"type":"string"}}}`
	fp.set([]Pool{
		{Name: "ask", InputSchema: json.RawMessage(schema)},
		{Name: "words", InputSchema: json.RawMessage(`{"type":"string"}`)},
		{Name: "plain"},
	})
	cs := connect(t, ts.URL+"/mcp")
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"ask": schema, "words": `{"type":"object"}`, "plain": `{"type":"object"}`}
	for _, tl := range res.Tools {
		got, _ := json.Marshal(tl.InputSchema)
		if !sameJSON(got, want[tl.Name]) {
			t.Errorf("tool %s: inputSchema %s, want %s", tl.Name, got, want[tl.Name])
		}
		delete(want, tl.Name)
	}
	if len(want) > 0 {
		t.Errorf("tools missing: %v", want)
	}
}

func sameJSON(a []byte, b string) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal([]byte(b), &y) == nil && reflect.DeepEqual(x, y)
}
