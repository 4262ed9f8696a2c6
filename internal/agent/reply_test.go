package agent

import (
	"bytes"
	"testing"
)

var replySeeds = []string{
	`{"jsonrpc":"2.0","id":7,"result":{"answer":"Paris","context_len":0}}`,
	`{"result":[1,2],"id":7,"jsonrpc":"2.0"}`,
	` { "jsonrpc" : "2.0" , "id" : 7 , "result" : "x" } `,
	`{"jsonrpc":"2.0","id":7,"result":null}`,
	`{"jsonrpc":"2.0","id":7,"error":{"code":-32000,"message":"model down"}}`,
	`{"jsonrpc":"2.0","id":8,"result":1}`,
	`{"jsonrpc":"2.0","id":"7","result":1}`,
	`{"jsonrpc":"2.0","ID":7,"result":1}`,
	`{"jsonrpc":"1.0","id":7,"result":1}`,
	`{"jsonrpc":"2.0","id":7,"result":1,"result":2}`,
	`{"jsonrpc":"2.0","id":7,"result":1,"extra":true}`,
	`{"jsonrpc":"2.0","id":7}`,
	`{"jsonrpc":"2.0","id":7,"result":{"answer": "trunc`,
	`{"jsonrpc":"2.0","id":07,"result":1}`,
	`{"jsonrpc":"2.0","id":7.0,"result":1}`,
	`not json`,
}

// TestDecodeResultFast: plain replies take the fast path, and whatever it
// answers, encoding/json answers the same.
func TestDecodeResultFast(t *testing.T) {
	for _, s := range replySeeds[:3] {
		if _, ok := decodeResultFast([]byte(s), 7); !ok {
			t.Errorf("the fast path refused %s", s)
		}
	}
	for _, s := range replySeeds[3:] {
		if _, ok := decodeResultFast([]byte(s), 7); ok {
			t.Errorf("the fast path took %s", s)
		}
	}
	for _, s := range replySeeds {
		checkReplyAgrees(t, []byte(s))
	}
}

func checkReplyAgrees(t *testing.T, line []byte) {
	t.Helper()
	fast, ok := decodeResultFast(line, 7)
	if !ok {
		return
	}
	// decodeReply without its fast path.
	slow, err := decodeReplySlow(line, 7)
	if err != nil {
		t.Fatalf("%q: the fast path took it, encoding/json says %v", line, err)
	}
	if !bytes.Equal(fast, slow) {
		t.Fatalf("%q: fast %s, encoding/json %s", line, fast, slow)
	}
}

// FuzzDecodeReply: whenever the fast path answers, encoding/json answers
// the same.
//
//	go test -run '^$' -fuzz FuzzDecodeReply -fuzztime 60s ./internal/agent/
func FuzzDecodeReply(f *testing.F) {
	for _, s := range replySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) { checkReplyAgrees(t, line) })
}

func BenchmarkDecodeReply(b *testing.B) {
	line := []byte(`{"jsonrpc":"2.0","id":7,"result":{"answer":"what is the capital of France?","context_len":0}}`)
	for _, c := range []struct {
		name string
		fn   func([]byte, uint64) error
	}{
		{"fast", func(l []byte, id uint64) error { _, err := decodeReply(l, id); return err }},
		{"encoding-json", func(l []byte, id uint64) error { _, err := decodeReplySlow(l, id); return err }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if err := c.fn(line, 7); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
