package contract_test

import (
	"fmt"
	"time"

	"github.com/resilienced/resilienced/internal/contract"
)

func Example() {
	c, err := contract.Compile(contract.Spec{
		Schema:         []byte(`{"type":"object","required":["answer"],"properties":{"answer":{"type":"string"}}}`),
		Deadline:       30 * time.Second,
		MaxOutputBytes: 1 << 20,
		MaxTokens:      4096,
		TokensPointer:  "/usage/total_tokens",
	})
	if err != nil {
		panic(err)
	}
	for _, output := range []string{
		`{"answer": "Paris", "usage": {"total_tokens": 12}}`,
		`{"answer": 42}`,
		`{"answer": "Paris", "usage": {"total_tokens": 5000}}`,
		`{"answer": "Par`,
	} {
		if v := c.Check([]byte(output)); v != nil {
			fmt.Println(v)
		} else {
			fmt.Println("valid")
		}
	}
	// Output:
	// valid
	// schema: at /answer: got number, want string
	// tokens: output has 5000 tokens (from /usage/total_tokens), limit 4096
	// invalid_json: unexpected end of JSON at byte 15 (truncated), expecting '"'
}
