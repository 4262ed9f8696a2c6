package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// maxSchemaNodes bounds the nodes of one inline schema counted through
// aliases, so that a few lines of nested aliases ("billion laughs") cannot
// expand into gigabytes of JSON.
const maxSchemaNodes = 20_000

// schemaJSON converts the inline YAML schema at n to JSON, in document
// order, recording every node's key path for the compiler's errors. It
// returns nil after reporting errors.
func (d *decoder) schemaJSON(n *yaml.Node, path string) json.RawMessage {
	c := &schemaConv{d: d, budget: maxSchemaNodes, active: map[*yaml.Node]bool{}, root: n, rootPath: path}
	var buf bytes.Buffer
	c.write(&buf, n, path)
	if c.failed {
		d.bad[path] = true
		return nil
	}
	return buf.Bytes()
}

type schemaConv struct {
	d      *decoder
	budget int
	active map[*yaml.Node]bool // the nodes being written, to catch alias cycles
	failed bool

	root     *yaml.Node
	rootPath string
}

func (c *schemaConv) fail(n *yaml.Node, path, format string, args ...any) {
	c.failed = true
	c.d.errorf(n, path, format, args...)
}

func (c *schemaConv) write(buf *bytes.Buffer, n *yaml.Node, path string) {
	alias := n
	n = resolve(n)
	if n == nil || n.Kind == 0 {
		buf.WriteString("null")
		return
	}
	if c.budget--; c.budget < 0 {
		if c.budget == -1 {
			c.fail(c.root, c.rootPath, "expands to more than %d nodes through aliases", maxSchemaNodes)
		}
		return
	}
	if c.active[n] {
		c.fail(alias, path, "alias refers to a node that contains it")
		return
	}
	c.active[n] = true
	defer delete(c.active, n)
	if _, seen := c.d.nodes[path]; !seen {
		c.d.nodes[path] = n
	}
	switch n.Kind {
	case yaml.MappingNode:
		buf.WriteByte('{')
		for i, p := range c.d.pairs(n, path) {
			if i > 0 {
				buf.WriteByte(',')
			}
			kp := joinKey(path, p.key)
			c.d.keys[kp] = p.k
			k, _ := json.Marshal(p.key)
			buf.Write(k)
			buf.WriteByte(':')
			c.write(buf, p.v, kp)
		}
		buf.WriteByte('}')
	case yaml.SequenceNode:
		buf.WriteByte('[')
		for i, item := range n.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			c.write(buf, item, joinIndex(path, i))
		}
		buf.WriteByte(']')
	case yaml.ScalarNode:
		c.scalar(buf, n, path)
	}
}

func (c *schemaConv) scalar(buf *bytes.Buffer, n *yaml.Node, path string) {
	var v any
	switch tag := n.ShortTag(); tag {
	case "!!null":
		buf.WriteString("null")
		return
	case "!!str", "!!timestamp", "!!binary":
		v = n.Value // a timestamp stays the text it was written as
	case "!!bool", "!!int", "!!float":
		if err := n.Decode(&v); err != nil {
			c.fail(n, path, "%q is not %s", n.Value, describe(n))
			return
		}
		if f, ok := v.(float64); ok && (math.IsInf(f, 0) || math.IsNaN(f)) {
			c.fail(n, path, "%s has no JSON representation", n.Value)
			return
		}
	default:
		c.fail(n, path, "tag %s has no JSON representation", tag)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		c.fail(n, path, "%q has no JSON representation", n.Value)
		return
	}
	buf.Write(b)
}

// schemaURL names the schema being compiled; it is cut out of the compiler's
// messages, which then read as JSON pointers into the schema.
const schemaURL = "file:///contract.json"

// noLoader refuses external references: a pool's contract is one
// self-contained schema, compiled the same way wherever it is used.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, errors.New("external references are not supported")
}

// schemaProblem is one compile error, at a JSON pointer into the schema
// given as its tokens.
type schemaProblem struct {
	at  []string
	msg string
}

var printer = message.NewPrinter(language.English)

// compileSchema compiles a contract's JSON Schema the way the configuration
// is validated: JSON Schema 2020-12 unless $schema says otherwise, and no
// external references. The contract package must compile it the same way,
// or it may refuse what the configuration accepted.
func compileSchema(schema json.RawMessage) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(noLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, err
	}
	return c.Compile(schemaURL)
}

// schemaProblems compiles schema and returns what is wrong with it, one
// problem per place in the schema.
func schemaProblems(schema json.RawMessage) []schemaProblem {
	_, err := compileSchema(schema)
	if err == nil {
		return unknownKeywords(schema)
	}
	var sve *jsonschema.SchemaValidationError
	var ve *jsonschema.ValidationError
	if !errors.As(err, &sve) || !errors.As(sve.Err, &ve) {
		// Cut the made-up base URL out: "#/$defs/x", "other.json".
		msg := strings.ReplaceAll(err.Error(), schemaURL, "")
		msg = strings.ReplaceAll(msg, "file:///", "")
		return []schemaProblem{{msg: strings.Join(strings.Fields(msg), " ")}}
	}
	var (
		out   []schemaProblem
		index = map[string]int{}
	)
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		key := strings.Join(e.InstanceLocation, "/")
		msg := e.ErrorKind.LocalizedString(printer)
		if i, ok := index[key]; ok {
			out[i].msg += "; or " + msg
			return
		}
		index[key] = len(out)
		out = append(out, schemaProblem{at: e.InstanceLocation, msg: msg})
	}
	walk(ve)
	return out
}

// schemaPath turns the tokens of a JSON pointer into doc into a key path
// under base, with [i] for array elements.
func schemaPath(base string, doc any, tokens []string) string {
	path := base
	for _, t := range tokens {
		switch v := doc.(type) {
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(v) {
				return path
			}
			path, doc = joinIndex(path, i), v[i]
		case map[string]any:
			path, doc = joinKey(path, t), v[t]
		default:
			return path
		}
	}
	return path
}

// pointer formats tokens as a JSON pointer.
func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(t))
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}
