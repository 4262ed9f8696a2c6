package contract

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCheck checks that Check never panics and that its verdict is
// consistent: a valid output is one JSON value in valid UTF-8 within the
// limits, and every violation is one short line with a known code.
func FuzzCheck(f *testing.F) {
	for _, seed := range []string{
		`{"answer":"x","usage":{"total_tokens":3}}`,
		`{"answer":42}`, `{}`, `[]`, `null`, `1e400`, `-0`, `"\ud800"`,
		`{"answer": "trunc`, `{"a":1} x`, "{\"answer\":\"\xff\"}",
		`{"answer":"x","steps":[{"n":-1}]}`, `{"usage":{"total_tokens":"5"}}`,
		`{"usage":{"total_tokens":1e308}}`, `{"usage":{"total_tokens":-1e400}}`,
		strings.Repeat("[", 10000), "",
	} {
		f.Add([]byte(seed))
	}
	c, err := Compile(Spec{
		Schema:         []byte(answerSchema),
		MaxOutputBytes: 4096,
		MaxTokens:      64,
		TokensPointer:  "/usage/total_tokens",
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, output []byte) {
		v := c.Check(output)
		if v == nil {
			if !json.Valid(output) || !utf8.Valid(output) || len(output) > 4096 {
				t.Fatalf("Check(%q) = valid", output)
			}
			return
		}
		switch v.Code {
		case CodeInvalidJSON, CodeSchema, CodeTooLarge, CodeTokens:
		default:
			t.Fatalf("Check(%q): unexpected code %q", output, v.Code)
		}
		if v.Code == CodeInvalidJSON && json.Valid(output) && utf8.Valid(output) {
			t.Fatalf("Check(%q) = %v, but the output is valid JSON", output, v)
		}
		if v.Message == "" || strings.ContainsAny(v.Message, "\n\r") ||
			len(v.Message) > maxMessage+len("…") || !utf8.ValidString(v.Message) {
			t.Fatalf("Check(%q): bad message %q", output, v.Message)
		}
	})
}
