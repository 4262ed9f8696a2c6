package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Spec describes a pool's output contract, as written in its configuration.
// A zero field means "no limit"; the zero Spec only requires valid JSON.
type Spec struct {
	// Schema is a JSON Schema (draft 2020-12 unless it says otherwise with
	// $schema). It must be self-contained: references to other documents
	// are refused, so that compiling never reads files or the network.
	// "format" is asserted, not only annotated. Empty means no schema.
	Schema json.RawMessage
	// Deadline is how long a call may take; the supervisor enforces it.
	Deadline time.Duration
	// MaxOutputBytes limits the size of the output: the bytes of the result
	// as the agent wrote them.
	MaxOutputBytes int64
	// MaxTokens limits the output's token count.
	MaxTokens int
	// TokensPointer is a JSON pointer (RFC 6901), e.g. "/usage/total_tokens",
	// to the token count the agent reports in its output. When the output
	// has no value there, or TokensPointer is empty, the count is
	// estimated as ⌈bytes/4⌉.
	TokensPointer string
}

// Contract is a compiled [Spec]. It is immutable and safe for concurrent use.
type Contract struct {
	schema         *jsonschema.Schema // nil: no schema
	deadline       time.Duration
	maxOutputBytes int64
	maxTokens      int
	tokensPointer  string
	tokensPath     []string // TokensPointer, split and unescaped
}

// schemaURL names the schema inside the compiler; it appears in no message.
const schemaURL = "mem:///contract.schema.json"

// Compile checks s and compiles its schema. The error wraps
// [ErrInvalidSpec] and says what is wrong.
func Compile(s Spec) (*Contract, error) {
	c := &Contract{
		deadline:       s.Deadline,
		maxOutputBytes: s.MaxOutputBytes,
		maxTokens:      s.MaxTokens,
		tokensPointer:  s.TokensPointer,
	}
	switch {
	case s.Deadline < 0:
		return nil, fmt.Errorf("%w: deadline %v is negative", ErrInvalidSpec, s.Deadline)
	case s.MaxOutputBytes < 0:
		return nil, fmt.Errorf("%w: max output bytes %d is negative", ErrInvalidSpec, s.MaxOutputBytes)
	case s.MaxTokens < 0:
		return nil, fmt.Errorf("%w: max tokens %d is negative", ErrInvalidSpec, s.MaxTokens)
	}
	if s.TokensPointer != "" {
		path, err := parsePointer(s.TokensPointer)
		if err != nil {
			return nil, fmt.Errorf("%w: tokens pointer: %w", ErrInvalidSpec, err)
		}
		c.tokensPath = path
	}
	if len(bytes.TrimSpace(s.Schema)) > 0 {
		sch, err := compileSchema(s.Schema)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrInvalidSpec, schemaErrorText(err))
		}
		c.schema = sch
	}
	return c, nil
}

func compileSchema(raw []byte) (*jsonschema.Schema, error) {
	doc, viol := parse(raw)
	if viol != nil {
		return nil, fmt.Errorf("schema is not JSON: %s", viol.Message)
	}
	comp := jsonschema.NewCompiler()
	comp.UseLoader(refuseLoader{})
	comp.AssertFormat()
	if err := comp.AddResource(schemaURL, doc); err != nil {
		return nil, err
	}
	return comp.Compile(schemaURL)
}

// refuseLoader keeps compilation hermetic: a contract that depends on a file
// or URL that may change or be unreachable is not a contract.
type refuseLoader struct{}

func (refuseLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("external reference %s is not supported: put the schema under $defs", url)
}

// schemaErrorText makes the compiler's error one line and drops the internal
// schema URL, which would only confuse the reader.
func schemaErrorText(err error) string {
	var meta *jsonschema.SchemaValidationError
	if errors.As(err, &meta) {
		// Only the deepest cause: the metaschema's full report is a page.
		if v := schemaViolation(meta.Err); v.Path != "" || v.Keyword != "" {
			return "schema is not a valid JSON Schema: " + v.Message
		}
	}
	s := err.Error()
	if !strings.HasPrefix(s, "schema is not JSON") {
		s = "schema: " + s
	}
	s = strings.ReplaceAll(s, strconv.Quote(schemaURL+"#"), "schema")
	s = strings.ReplaceAll(s, strconv.Quote(schemaURL), "schema")
	s = strings.ReplaceAll(s, schemaURL, "")
	return strings.Join(strings.Fields(s), " ")
}

// Deadline returns how long a call may take; 0 means no deadline.
func (c *Contract) Deadline() time.Duration { return c.deadline }

// MaxOutputBytes returns the output size limit; 0 means no limit. A
// transport can use it to stop reading an output early.
func (c *Contract) MaxOutputBytes() int64 { return c.maxOutputBytes }

// Check checks output against the contract and returns the first violation
// (size, then syntax, then tokens, then schema), or nil when output is valid.
func (c *Contract) Check(output []byte) *Violation {
	if c.maxOutputBytes > 0 && int64(len(output)) > c.maxOutputBytes {
		return &Violation{Code: CodeTooLarge, Message: "output is " +
			sizePair(int64(len(output)), c.maxOutputBytes)}
	}

	if c.schema == nil && (c.tokensPath == nil || c.maxTokens <= 0) {
		// Nothing needs the decoded value: validating is enough, and the
		// parser runs only to explain a failure.
		if json.Valid(output) && utf8.Valid(output) {
			return c.checkTokens(output, nil)
		}
		_, viol := parse(output)
		return viol
	}

	v, viol := parse(output)
	if viol != nil {
		return viol
	}

	if viol := c.checkTokens(output, v); viol != nil {
		return viol
	}

	if c.schema != nil {
		if err := c.schema.Validate(v); err != nil {
			return schemaViolation(err)
		}
	}
	return nil
}

// checkTokens counts tokens as the agent reports them at tokensPath, or
// estimates them from the size.
func (c *Contract) checkTokens(output []byte, v any) *Violation {
	if c.maxTokens <= 0 {
		return nil
	}
	if c.tokensPath != nil {
		if reported, ok := lookup(v, c.tokensPath); ok {
			n, err := tokenCount(reported)
			if err != nil {
				return &Violation{Code: CodeTokens,
					Message: oneLine(fmt.Sprintf("token count at %s %v", c.tokensPointer, err))}
			}
			if n > int64(c.maxTokens) {
				return &Violation{Code: CodeTokens, Message: fmt.Sprintf(
					"output has %d tokens (from %s), limit %d", n, c.tokensPointer, c.maxTokens)}
			}
			return nil
		}
	}
	n := (int64(len(output)) + 3) / 4
	if n > int64(c.maxTokens) {
		return &Violation{Code: CodeTokens, Message: fmt.Sprintf(
			"output has %d tokens (estimated from %d bytes), limit %d", n, len(output), c.maxTokens)}
	}
	return nil
}

// tokenCount accepts a non-negative number; a fractional count is rounded up.
func tokenCount(v any) (int64, error) {
	num, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("is %s, want a number", jsonType(v))
	}
	if n, err := num.Int64(); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("is %d, want a non-negative number", n)
		}
		return n, nil
	}
	f, err := num.Float64()
	if err != nil && !math.IsInf(f, 0) {
		return 0, fmt.Errorf("is %s, want a number", num)
	}
	if f < 0 {
		return 0, fmt.Errorf("is %s, want a non-negative number", num)
	}
	if f >= math.MaxInt64 {
		return math.MaxInt64, nil
	}
	return int64(math.Ceil(f)), nil
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
