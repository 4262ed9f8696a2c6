package contract

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

const answerSchema = `{
	"type": "object",
	"required": ["answer"],
	"properties": {
		"answer": {"type": "string"},
		"steps": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}},
		"email": {"format": "email"}
	}
}`

func mustCompile(t testing.TB, s Spec) *Contract {
	t.Helper()
	c, err := Compile(s)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return c
}

func TestCheck(t *testing.T) {
	c := mustCompile(t, Spec{
		Schema:         []byte(answerSchema),
		MaxOutputBytes: 200,
		MaxTokens:      40,
		TokensPointer:  "/usage/total_tokens",
	})
	tests := []struct {
		name   string
		output string
		code   Code   // "" means valid
		msg    string // the exact message, when set
		path   string
	}{
		{name: "valid", output: `{"answer": "42", "usage": {"total_tokens": 12}}`},
		{name: "valid with surrounding whitespace", output: " \n{\"answer\":\"x\"}\r\n\t"},
		{name: "valid deep", output: `{"answer":"x","steps":[{"n":0},{"n":3}]}`},
		{name: "too large", output: `{"answer":"` + strings.Repeat("x", 300) + `"}`, code: CodeTooLarge,
			msg: "output is 313 B, limit 200 B"},
		{name: "too large beats invalid JSON", output: strings.Repeat("{", 201), code: CodeTooLarge},
		{name: "empty", output: "", code: CodeInvalidJSON, msg: "output is empty"},
		{name: "only whitespace", output: " \n ", code: CodeInvalidJSON, msg: "output is empty"},
		{name: "truncated", output: `{"answer": "trunc`, code: CodeInvalidJSON,
			msg: `unexpected end of JSON at byte 17 (truncated), expecting '"'`},
		{name: "syntax error offset", output: `{"answer":tru}`, code: CodeInvalidJSON,
			msg: `invalid character '}' at byte 13, expecting "true"`},
		{name: "trailing garbage", output: `{"answer":"x"} garbage`, code: CodeInvalidJSON,
			msg: "trailing data after the JSON value at byte 15"},
		{name: "second value", output: `{"answer":"x"}{"answer":"y"}`, code: CodeInvalidJSON,
			msg: "trailing data after the JSON value at byte 14"},
		{name: "invalid UTF-8 in string", output: "{\"answer\":\"a\xffb\"}", code: CodeInvalidJSON,
			msg: "invalid UTF-8 at byte 12"},
		{name: "invalid JSON beats tokens", output: `{"usage":{"total_tokens":1000}`, code: CodeInvalidJSON},
		{name: "reported tokens", output: `{"answer":"x","usage":{"total_tokens":5000}}`, code: CodeTokens,
			msg: "output has 5000 tokens (from /usage/total_tokens), limit 40"},
		{name: "reported tokens at limit", output: `{"answer":"x","usage":{"total_tokens":40}}`},
		{name: "reported tokens trusted over size", output: `{"answer":"` + strings.Repeat("x", 150) + `","usage":{"total_tokens":3}}`},
		{name: "fractional reported tokens round up", output: `{"answer":"x","usage":{"total_tokens":40.5}}`, code: CodeTokens,
			msg: "output has 41 tokens (from /usage/total_tokens), limit 40"},
		{name: "huge reported tokens", output: `{"answer":"x","usage":{"total_tokens":1e400}}`, code: CodeTokens},
		{name: "reported tokens not a number", output: `{"answer":"x","usage":{"total_tokens":"5"}}`, code: CodeTokens,
			msg: "token count at /usage/total_tokens is string, want a number"},
		{name: "reported tokens negative", output: `{"answer":"x","usage":{"total_tokens":-1}}`, code: CodeTokens,
			msg: "token count at /usage/total_tokens is -1, want a non-negative number"},
		{name: "reported tokens hugely negative", output: `{"answer":"x","usage":{"total_tokens":-1e400}}`, code: CodeTokens,
			msg: "token count at /usage/total_tokens is -1e400, want a non-negative number"},
		{name: "estimated tokens", output: `{"answer":"` + strings.Repeat("x", 160) + `"}`, code: CodeTokens,
			msg: "output has 44 tokens (estimated from 173 bytes), limit 40"},
		{name: "tokens beat schema", output: `[` + strings.Repeat("1,", 90) + `1]`, code: CodeTokens},
		{name: "schema type", output: `{"answer": 42}`, code: CodeSchema,
			msg: "at /answer: got number, want string", path: "/answer"},
		{name: "schema required", output: `{"usage": {}}`, code: CodeSchema,
			msg: "at root: missing property 'answer'", path: ""},
		{name: "schema root type", output: `"just text"`, code: CodeSchema,
			msg: "at root: got string, want object"},
		{name: "schema deepest cause", output: `{"answer":"x","steps":[{"n":1},{"n":-2}]}`, code: CodeSchema,
			msg: "at /steps/1/n: minimum: got -2, want 0", path: "/steps/1/n"},
		{name: "schema format asserted", output: `{"answer":"x","email":"nope"}`, code: CodeSchema, path: "/email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := c.Check([]byte(tt.output))
			if tt.code == "" {
				if v != nil {
					t.Fatalf("Check(%q) = %v, want valid", tt.output, v)
				}
				return
			}
			if v == nil {
				t.Fatalf("Check(%q) = nil, want %s", tt.output, tt.code)
			}
			if v.Code != tt.code {
				t.Fatalf("Check(%q) = %v, want code %s", tt.output, v, tt.code)
			}
			if tt.msg != "" && v.Message != tt.msg {
				t.Errorf("message = %q, want %q", v.Message, tt.msg)
			}
			if tt.code == CodeSchema {
				if v.Path != tt.path {
					t.Errorf("path = %q, want %q", v.Path, tt.path)
				}
				if v.Keyword == "" {
					t.Errorf("schema violation %v has no keyword location", v)
				}
			}
			if strings.ContainsAny(v.Message, "\n\r") || len(v.Message) > maxMessage+len("…") {
				t.Errorf("message is not one short line: %q", v.Message)
			}
		})
	}
}

func TestCheckSchemaViolationError(t *testing.T) {
	c := mustCompile(t, Spec{Schema: []byte(answerSchema)})
	v := c.Check([]byte(`{"answer": 42}`))
	if v == nil {
		t.Fatal("want a violation")
	}
	if got, want := v.Error(), "schema: at /answer: got number, want string"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if v.Keyword != "/properties/answer/type" {
		t.Errorf("Keyword = %q, want /properties/answer/type", v.Keyword)
	}
}

func TestCheckLongSchemaMessageIsCapped(t *testing.T) {
	long := strings.Repeat("a", 500)
	c := mustCompile(t, Spec{Schema: []byte(`{"properties": {"k": {"const": "` + long + `"}}}`)})
	v := c.Check([]byte(`{"k": "` + long + `b"}`))
	if v == nil || v.Code != CodeSchema {
		t.Fatalf("Check = %v, want a schema violation", v)
	}
	if len(v.Message) > maxMessage+len("…") || !strings.HasSuffix(v.Message, "…") {
		t.Errorf("message not capped: %d bytes: %q", len(v.Message), v.Message)
	}
	if !strings.HasPrefix(v.Message, "at /k: ") {
		t.Errorf("message lost its location: %q", v.Message)
	}
}

func TestCheckNoLimits(t *testing.T) {
	c := mustCompile(t, Spec{})
	for _, out := range []string{`null`, `1e400`, `"x"`, `[]`, `{"answer": 42}`, `{"a":"` + strings.Repeat("x", 1<<20) + `"}`} {
		if v := c.Check([]byte(out)); v != nil {
			t.Errorf("Check(%.40q) = %v, want valid under the zero spec", out, v)
		}
	}
	if v := c.Check([]byte(`{`)); v == nil || v.Code != CodeInvalidJSON {
		t.Errorf("Check({) = %v, want invalid_json even without limits", v)
	}
}

func TestCheckSizeMessages(t *testing.T) {
	tests := []struct {
		size, limit int64
		want        string
	}{
		{size: 2200000, limit: 1 << 20, want: "output is 2.1 MiB, limit 1 MiB"},
		{size: 1<<20 + 1, limit: 1 << 20, want: "output is 1 MiB (1048577 bytes), limit 1 MiB (1048576 bytes)"},
		{size: 5000, limit: 4096, want: "output is 4.9 KiB, limit 4 KiB"},
		{size: 11, limit: 10, want: "output is 11 B, limit 10 B"},
	}
	for _, tt := range tests {
		c := mustCompile(t, Spec{MaxOutputBytes: tt.limit})
		v := c.Check(make([]byte, tt.size))
		if v == nil || v.Code != CodeTooLarge {
			t.Fatalf("Check(%d bytes) = %v, want too_large", tt.size, v)
		}
		if v.Message != tt.want {
			t.Errorf("Check(%d bytes, limit %d) message = %q, want %q", tt.size, tt.limit, v.Message, tt.want)
		}
	}
	// Exactly at the limit is allowed.
	c := mustCompile(t, Spec{MaxOutputBytes: 4})
	if v := c.Check([]byte(`true`)); v != nil {
		t.Errorf("output at the limit: %v", v)
	}
}

func TestCheckTokensPointer(t *testing.T) {
	tests := []struct {
		pointer, output string
		want            Code
	}{
		// Absent: estimated from 18 bytes = 5 tokens, limit 4.
		{pointer: "/usage/total_tokens", output: `{"usage":{"x":1}}  `, want: CodeTokens},
		{pointer: "/usage/total_tokens", output: `{"usage":{"total_tokens":4}}`},
		{pointer: "/n", output: `{"n":5}`, want: CodeTokens},
		{pointer: "/arr/1", output: `{"arr":[9,2]}`},
		{pointer: "/arr/01", output: `{"arr":[9,2],"pad":"xxx"}`, want: CodeTokens}, // not an index: estimated
		{pointer: "/a~1b/c~0d", output: `{"a/b":{"c~d":3}}`},
		{pointer: "/a~1b/c~0d", output: `{"a/b":{"c~d":30}}`, want: CodeTokens},
		{pointer: "/", output: `{"":2}`},
		{pointer: "/x/y", output: `{"x":"string"}`}, // through a scalar: absent, estimated 4
	}
	for _, tt := range tests {
		c := mustCompile(t, Spec{MaxTokens: 4, TokensPointer: tt.pointer})
		v := c.Check([]byte(tt.output))
		switch {
		case tt.want == "" && v != nil:
			t.Errorf("pointer %s, output %s: %v, want valid", tt.pointer, tt.output, v)
		case tt.want != "" && (v == nil || v.Code != tt.want):
			t.Errorf("pointer %s, output %s: %v, want %s", tt.pointer, tt.output, v, tt.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want string // substring of the error
	}{
		{"schema not JSON", Spec{Schema: []byte(`{"type":`)}, "schema is not JSON"},
		{"schema trailing data", Spec{Schema: []byte(`{} {}`)}, "schema is not JSON: trailing data"},
		{"unknown type", Spec{Schema: []byte(`{"type":"strin"}`)}, "schema is not a valid JSON Schema: at /type"},
		{"bad regexp", Spec{Schema: []byte(`{"pattern":"("}`)}, "at /pattern"},
		{"not a schema", Spec{Schema: []byte(`42`)}, "schema is not a valid JSON Schema"},
		{"external ref", Spec{Schema: []byte(`{"$ref":"https://example.com/s.json"}`)}, "external reference https://example.com/s.json is not supported"},
		{"file ref", Spec{Schema: []byte(`{"$ref":"file:///etc/passwd"}`)}, "external reference file:///etc/passwd"},
		{"dangling ref", Spec{Schema: []byte(`{"$ref":"#/$defs/missing"}`)}, "#/$defs/missing"},
		{"negative deadline", Spec{Deadline: -time.Second}, "deadline -1s is negative"},
		{"negative size", Spec{MaxOutputBytes: -1}, "max output bytes -1 is negative"},
		{"negative tokens", Spec{MaxTokens: -1}, "max tokens -1 is negative"},
		{"pointer without slash", Spec{TokensPointer: "usage/total_tokens"}, "must start with /"},
		{"pointer bad escape", Spec{TokensPointer: "/a~2"}, "~ must be followed by 0 or 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Compile(tt.spec)
			if err == nil {
				t.Fatalf("Compile = %v, want an error", c)
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("error %v does not wrap ErrInvalidSpec", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), schemaURL) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q leaks the internal URL or spans lines", err)
			}
		})
	}
}

func TestCompileKeepsLimits(t *testing.T) {
	c := mustCompile(t, Spec{Deadline: 3 * time.Second, MaxOutputBytes: 1 << 20})
	if c.Deadline() != 3*time.Second {
		t.Errorf("Deadline = %v", c.Deadline())
	}
	if c.MaxOutputBytes() != 1<<20 {
		t.Errorf("MaxOutputBytes = %d", c.MaxOutputBytes())
	}
}

func TestCompileSchemaDraft(t *testing.T) {
	// $schema selects the draft: draft-07 ignores 2020-12's prefixItems.
	c := mustCompile(t, Spec{Schema: []byte(`{"$schema":"http://json-schema.org/draft-07/schema#","prefixItems":[{"type":"string"}]}`)})
	if v := c.Check([]byte(`[1]`)); v != nil {
		t.Errorf("draft-07: %v, want valid", v)
	}
	c = mustCompile(t, Spec{Schema: []byte(`{"prefixItems":[{"type":"string"}]}`)})
	if v := c.Check([]byte(`[1]`)); v == nil || v.Path != "/0" {
		t.Errorf("draft 2020-12: %v, want a schema violation at /0", v)
	}
}

func TestCheckConcurrent(t *testing.T) {
	c := mustCompile(t, Spec{Schema: []byte(answerSchema), MaxTokens: 100})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				good := fmt.Sprintf(`{"answer":"g%d-%d"}`, g, i)
				if v := c.Check([]byte(good)); v != nil {
					errs <- fmt.Errorf("Check(%s) = %v", good, v)
					return
				}
				if v := c.Check([]byte(`{"answer":1}`)); v == nil || v.Code != CodeSchema {
					errs <- fmt.Errorf("bad output passed: %v", v)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestViolation(t *testing.T) {
	v := NewViolation(CodeDeadline, "no output after %v", 2*time.Second)
	if got, want := v.Error(), "deadline: no output after 2s"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}

	wrapped := fmt.Errorf("call 7 on pool chat: %w", v)
	got, ok := AsViolation(wrapped)
	if !ok || got != v {
		t.Errorf("AsViolation(wrapped) = %v, %v; want the violation", got, ok)
	}
	if _, ok := AsViolation(errors.New("plain")); ok {
		t.Error("AsViolation found a violation in a plain error")
	}
	if _, ok := AsViolation(nil); ok {
		t.Error("AsViolation(nil) = true")
	}

	multi := NewViolation(CodeExit, "agent exited:\nstatus %d\r\n%s", 1, strings.Repeat("é", 300))
	if strings.ContainsAny(multi.Message, "\n\r") {
		t.Errorf("message spans lines: %q", multi.Message)
	}
	if len(multi.Message) > maxMessage+len("…") || !strings.HasSuffix(multi.Message, "…") {
		t.Errorf("message not capped: %d bytes", len(multi.Message))
	}
	if !strings.HasPrefix(multi.Message, "agent exited: status 1 ") {
		t.Errorf("message = %q", multi.Message)
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB",
		1 << 20: "1 MiB", 3 << 30: "3 GiB", 1<<40 + 1<<39: "1.5 TiB",
	} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}
