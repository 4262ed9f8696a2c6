package contract

import (
	"encoding/json"
	"testing"
)

// typicalOutput is a 200-byte agent answer of the usual shape.
var typicalOutput = []byte(`{"answer":"The capital of France is Paris. It has been the capital since 987.","confidence":0.97,"sources":["encyclopedia","atlas"],"context_len":3,"usage":{"total_tokens":57}}`)

const smallSchema = `{
	"type": "object",
	"required": ["answer"],
	"properties": {
		"answer": {"type": "string", "minLength": 1},
		"confidence": {"type": "number", "minimum": 0, "maximum": 1},
		"sources": {"type": "array", "items": {"type": "string"}},
		"usage": {"type": "object", "properties": {"total_tokens": {"type": "integer"}}}
	}
}`

// BenchmarkCheck measures Check on a typical output beside the floor it
// cannot beat: json.Valid on the same bytes. The Check sub-benchmarks
// report x-json.Valid, their cost as a multiple of that baseline.
func BenchmarkCheck(b *testing.B) {
	b.Logf("output: %d bytes", len(typicalOutput))
	c, err := Compile(Spec{
		Schema:         []byte(smallSchema),
		MaxOutputBytes: 1 << 20,
		MaxTokens:      4096,
		TokensPointer:  "/usage/total_tokens",
	})
	if err != nil {
		b.Fatal(err)
	}
	if v := c.Check(typicalOutput); v != nil {
		b.Fatalf("typical output is not valid: %v", v)
	}
	noSchema, _ := Compile(Spec{MaxOutputBytes: 1 << 20, MaxTokens: 4096, TokensPointer: "/usage/total_tokens"})

	var baseline float64 // ns/op of json.Valid, measured first
	b.Run("baseline=json.Valid", func(b *testing.B) {
		b.SetBytes(int64(len(typicalOutput)))
		b.ReportAllocs()
		for b.Loop() {
			if !json.Valid(typicalOutput) {
				b.Fatal("invalid")
			}
		}
		baseline = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	run := func(name string, c *Contract) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(typicalOutput)))
			b.ReportAllocs()
			for b.Loop() {
				if v := c.Check(typicalOutput); v != nil {
					b.Fatal(v)
				}
			}
			if baseline > 0 {
				ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				b.ReportMetric(ns/baseline, "x-json.Valid")
			}
		})
	}
	run("Check", c)
	run("Check/no-schema", noSchema)
}
