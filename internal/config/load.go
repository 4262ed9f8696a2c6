package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// maxSchemaFileBytes bounds what Load reads for one schema_file.
const maxSchemaFileBytes = 16 << 20

// Load reads, parses and validates the configuration file at path, applies
// the defaults, and reads every pool's contract.schema_file (resolved against
// the directory of path) into Contract.Schema. Config.Path is set to path.
//
// An invalid file gives an [Errors] listing every problem; a file that
// cannot be read gives the os error, wrapped.
func Load(path string) (*Config, error) {
	return load(path, false)
}

// Check is [Load] that also checks the file against this host, as
// `resilienced --check` does: every pool's dir exists, its user and group
// exist, its command resolves to an executable. A pool that fails them
// would be refused or fail at its first start, far from the file; here
// the problems come with their line, column and key path, all at once.
func Check(path string) (*Config, error) {
	return load(path, true)
}

func load(path string, host bool) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := parse(path, data, filepath.Dir(path), host)
	if err != nil {
		return nil, err
	}
	c.Path = path
	return c, nil
}

// Parse parses and validates a configuration from data and applies the
// defaults; name is the file name used in error messages. Parse touches no
// file: a pool's schema_file is left unread (Contract.Schema stays empty),
// which is the one thing [Load] does in addition.
func Parse(name string, data []byte) (*Config, error) {
	return parse(name, data, "", false)
}

// parse reads schema files relative to dir unless dir is "".
func parse(name string, data []byte, dir string, host bool) (*Config, error) {
	d := &decoder{
		file:   name,
		nodes:  map[string]*yaml.Node{},
		keys:   map[string]*yaml.Node{},
		bad:    map[string]bool{},
		merged: map[*yaml.Node][]pair{},
	}
	c := Default()
	root := d.parseYAML(data)
	if len(d.errs) > 0 {
		return nil, d.errs // a syntax error: there is nothing to walk
	}
	if root != nil {
		v, ok := d.fileVersion(root)
		if ok {
			ok = d.migrate(root, v, CurrentVersion, migrations)
		}
		if !ok {
			d.errs.sort()
			return nil, d.errs
		}
		d.decode(root, "", reflect.ValueOf(c).Elem(), false)
	}
	if dir != "" {
		d.readSchemaFiles(c, dir)
	}
	// Validate even after decoding errors, to report every problem at once;
	// the validator skips the key paths that failed to decode.
	v := &validator{file: name, nodes: d.nodes, keys: d.keys, bad: d.bad}
	v.config(c)
	if host && len(v.errs) == 0 {
		for i := range c.Pools {
			v.host(joinIndex("pools", i), &c.Pools[i])
		}
	}
	d.errs = append(d.errs, v.errs...)
	if len(d.errs) > 0 {
		d.errs.sort()
		return nil, d.errs
	}
	return c, nil
}

// The file is decoded into a yaml.Node tree and walked here, rather than
// decoded into the structs with yaml.Decoder.KnownFields, because that
// reports errors as strings with a line but no column and no key path
// ("line 12: field replicaz not found in type config.Pool"), knows nothing
// of sizes ("1MiB" into an int64), and leaves no way to tell a key left out
// from one set to zero, which the defaults need (replicas: 0 is an error,
// retries: 0 is not). Walking the nodes, over the structs' yaml tags, gives
// every error with its line, column and key path in one pass.
type decoder struct {
	file string
	errs Errors
	// nodes holds the value node of every key path that was set, keys its
	// key node, so that validation can point at them.
	nodes map[string]*yaml.Node
	keys  map[string]*yaml.Node
	// bad holds the key paths whose value could not be decoded: validation
	// says nothing more about them.
	bad map[string]bool
	// merged memoizes the effective key/value pairs of a mapping (after
	// "<<" merges), which also reports a mapping's duplicate keys once.
	merged map[*yaml.Node][]pair
}

type pair struct {
	key  string
	k, v *yaml.Node
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	e := &Error{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

// fail reports a value that could not be decoded.
func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.bad[path] = true
	d.errorf(n, path, format, args...)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML returns the root node of the single document in data, or nil
// when data is empty or has errors.
func (d *decoder) parseYAML(data []byte) (root *yaml.Node) {
	if !d.checkChars(data) {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		d.syntaxError(err)
		return nil
	}
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		switch {
		case errors.Is(err, io.EOF):
		case err != nil:
			d.syntaxError(err)
			return nil
		case len(next.Content) == 1 && next.Content[0].Tag == "!!null" && next.Content[0].Value == "":
			continue // a trailing "---" starts an empty document: harmless
		default:
			d.errorf(&next, "", "a second YAML document: the configuration is one document")
			return nil
		}
		break
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil
	}
	return doc.Content[0]
}

// syntaxError turns a yaml error, which gives a line but not a column, into
// an Error.
func (d *decoder) syntaxError(err error) {
	e := &Error{File: d.file, Line: 1, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = m[2]
	}
	d.errs = append(d.errs, e)
}

// checkChars finds what the YAML reader refuses, invalid UTF-8 and control
// characters, because its own errors for them carry no position.
func (d *decoder) checkChars(data []byte) bool {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		bad := ""
		switch {
		case r == utf8.RuneError && size == 1:
			bad = fmt.Sprintf("invalid UTF-8 byte %#02x: the file must be UTF-8", data[i])
		case r == '\t' || r == '\n' || r == '\r' || r == 0x85:
		case r < 0x20 || r == 0x7f || (r > 0x7f && r < 0xa0) || (r > 0xd7ff && r < 0xe000) || r == 0xfffe || r == 0xffff:
			bad = fmt.Sprintf("control character %U is not allowed", r)
		}
		if bad != "" {
			d.errs = append(d.errs, &Error{File: d.file, Line: line, Column: col, Msg: bad})
			return false
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
	return true
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names what a node is, for "expected X, got Y".
func describe(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.ShortTag() {
	case "!!str":
		return "a string"
	case "!!int":
		return "an integer"
	case "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "null"
	case "!!timestamp":
		return "a timestamp"
	}
	return "a value tagged " + n.ShortTag()
}

// joinKey appends a mapping key to a key path; keys that would not read
// back unambiguously are quoted.
func joinKey(path, key string) string {
	plain := key != ""
	for _, r := range key {
		if !(r == '_' || r == '-' || r == '/' || r == '$' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			plain = false
			break
		}
	}
	if !plain {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func joinIndex(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// pairs returns the key/value pairs of mapping n with "<<" merges applied
// (explicit keys win over merged ones, earlier merges over later ones),
// reporting non-string and duplicate keys.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	if ps, ok := d.merged[n]; ok {
		return ps
	}
	d.merged[n] = nil // a merge that refers back to n adds nothing
	var (
		out    []pair
		seen   = map[string]*yaml.Node{}
		merges []*yaml.Node
	)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		switch {
		case k == nil:
			continue
		case k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge":
			merges = append(merges, v)
			continue
		case k.Kind != yaml.ScalarNode:
			d.errorf(k, path, "a key must be a string, got %s", describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(n.Content[i], joinKey(path, k.Value), "duplicate key (first at line %d)", first.Line)
			continue
		}
		seen[k.Value] = n.Content[i]
		out = append(out, pair{k.Value, n.Content[i], v})
	}
	for _, m := range merges {
		var sources []*yaml.Node
		switch m := resolve(m); {
		case m != nil && m.Kind == yaml.MappingNode:
			sources = append(sources, m)
		case m != nil && m.Kind == yaml.SequenceNode:
			for _, s := range m.Content {
				if s := resolve(s); s != nil && s.Kind == yaml.MappingNode {
					sources = append(sources, s)
				} else {
					d.errorf(s, joinKey(path, "<<"), "expected a mapping to merge, got %s", describe(s))
				}
			}
		default:
			d.errorf(m, joinKey(path, "<<"), "expected a mapping or a list of mappings to merge, got %s", describe(m))
		}
		for _, s := range sources {
			for _, p := range d.pairs(s, path) {
				if _, ok := seen[p.key]; !ok {
					seen[p.key] = p.k
					out = append(out, p)
				}
			}
		}
	}
	d.merged[n] = out
	return out
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	rawJSONType  = reflect.TypeFor[json.RawMessage]()
	contractType = reflect.TypeFor[Contract]()
	poolType     = reflect.TypeFor[Pool]()
	groupType    = reflect.TypeFor[Group]()
)

// sizeFields are the int64 fields written as sizes ("1MiB").
var sizeFields = map[reflect.Type]map[string]bool{
	reflect.TypeFor[Contract]():     {"MaxOutputBytes": true},
	reflect.TypeFor[Limits]():       {"Memory": true},
	reflect.TypeFor[ContextLimit](): {"Bytes": true},
}

// field is one YAML key of a struct.
type field struct {
	key   string
	index int
	size  bool
}

func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		sf := t.Field(i)
		key, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if key == "-" || !sf.IsExported() {
			continue
		}
		if key == "" {
			key = strings.ToLower(sf.Name)
		}
		fs = append(fs, field{key: key, index: i, size: sizeFields[t][sf.Name]})
	}
	return fs
}

// decode sets v from node n at key path; a null leaves v (its default) as is.
func (d *decoder) decode(n *yaml.Node, path string, v reflect.Value, size bool) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	d.nodes[path] = n
	t := v.Type()
	switch {
	case t == durationType:
		d.duration(n, path, v)
		return
	case t == rawJSONType:
		// A JSON Schema written inline in YAML (input_schema).
		v.SetBytes(d.schemaJSON(n, path))
		return
	case size:
		d.size(n, path, v)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d.structure(n, path, v)
	case reflect.Slice:
		d.list(n, path, v)
	case reflect.Map:
		d.dict(n, path, v)
	case reflect.String:
		if s, ok := d.scalar(n, path, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "expected an integer, got %s", describe(n))
			return
		}
		var i int64
		if n.ShortTag() != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
			d.fail(n, path, "%q is not an integer", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "expected a number, got %s", describe(n))
		} else if tag := n.ShortTag(); (tag != "!!int" && tag != "!!float") || n.Decode(&f) != nil {
			d.fail(n, path, "%q is not a number", n.Value)
		} else {
			v.SetFloat(f)
		}
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "expected true or false, got %s", describe(n))
		} else if n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.fail(n, path, "%q is not true or false", n.Value)
		} else {
			v.SetBool(b)
		}
	default:
		// A field type added to types.go without teaching the decoder.
		d.fail(n, path, "internal error: cannot decode into %s", t)
	}
}

// scalar returns the text of a scalar node, reporting anything else.
func (d *decoder) scalar(n *yaml.Node, path, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "expected %s, got %s", want, describe(n))
		return "", false
	}
	switch tag := n.ShortTag(); tag {
	case "!!str", "!!int", "!!float", "!!bool", "!!timestamp":
	default:
		d.fail(n, path, "expected %s, got %s", want, describe(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) duration(n *yaml.Node, path string, v reflect.Value) {
	s, ok := d.scalar(n, path, "a duration")
	if !ok {
		return
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		if _, numErr := strconv.ParseFloat(s, 64); numErr == nil {
			d.fail(n, path, "%q is not a duration: missing unit (e.g. %q)", s, s+"s")
		} else {
			d.fail(n, path, "%q is not a duration", s)
		}
		return
	}
	v.SetInt(int64(dur))
}

func (d *decoder) size(n *yaml.Node, path string, v reflect.Value) {
	s, ok := d.scalar(n, path, "a size")
	if !ok {
		return
	}
	if n.ShortTag() == "!!int" {
		var i int64
		if n.Decode(&i) != nil {
			d.fail(n, path, "%q is not a size", s)
			return
		}
		v.SetInt(i)
		return
	}
	size, err := ParseSize(s)
	if err != nil {
		d.fail(n, path, "%v", err)
		return
	}
	v.SetInt(size)
}

func (d *decoder) structure(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	t := v.Type()
	fs := fieldsOf(t)
	for _, p := range d.pairs(n, path) {
		kp := joinKey(path, p.key)
		d.keys[kp] = p.k
		if t == contractType && p.key == "schema" {
			if !isNull(resolve(p.v)) {
				d.nodes[kp] = resolve(p.v)
				v.FieldByIndex([]int{indexOf(t, "Schema")}).SetBytes(d.schemaJSON(p.v, kp))
			}
			continue
		}
		var f *field
		for i := range fs {
			if fs[i].key == p.key {
				f = &fs[i]
				break
			}
		}
		if f == nil && path == "" && strings.HasPrefix(p.key, "x-") {
			continue // an extension key, a place for anchors
		}
		if f == nil {
			keys := make([]string, 0, len(fs)+1)
			for _, f := range fs {
				keys = append(keys, f.key)
			}
			if t == contractType {
				keys = append(keys, "schema")
			}
			d.bad[kp] = true
			if s := suggest(p.key, keys); s != "" {
				d.errorf(p.k, kp, "unknown key; did you mean %q?", s)
			} else if path == "" {
				d.errorf(p.k, kp, `unknown key (keys starting with "x-" are ignored, e.g. to hold YAML anchors)`)
			} else {
				d.errorf(p.k, kp, "unknown key")
			}
			continue
		}
		d.decode(p.v, kp, v.Field(f.index), f.size)
	}
}

func indexOf(t reflect.Type, name string) int {
	f, _ := t.FieldByName(name)
	return f.Index[0]
}

func (d *decoder) list(n *yaml.Node, path string, v reflect.Value) {
	t := v.Type()
	elem := t.Elem()
	if n.Kind != yaml.SequenceNode {
		want := "a list"
		if elem.Kind() == reflect.String {
			want = "a list of strings"
		}
		d.fail(n, path, "expected %s, got %s", want, describe(n))
		return
	}
	s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
	for i, item := range n.Content {
		ip := joinIndex(path, i)
		e := s.Index(i)
		switch elem {
		case poolType:
			e.Set(reflect.ValueOf(DefaultPool()))
		case groupType:
			e.Set(reflect.ValueOf(DefaultGroup()))
		}
		if isNull(resolve(item)) {
			d.fail(item, ip, "expected %s, got null", kindWord(elem))
			continue
		}
		d.decode(item, ip, e, false)
		if elem == poolType {
			p := e.Addr().Interface().(*Pool)
			// max_spares defaults to spares, whatever spares was set to.
			if _, set := d.nodes[joinKey(ip, "max_spares")]; !set {
				p.MaxSpares = p.Spares
			}
			// max_open_for defaults to at least open_for: a file that sets
			// only open_for, above the default cap, keeps a fixed cool-down
			// as it had before max_open_for existed.
			if _, set := d.nodes[joinKey(joinKey(ip, "breaker"), "max_open_for")]; !set {
				p.Breaker.MaxOpenFor = max(p.Breaker.MaxOpenFor, p.Breaker.OpenFor)
			}
		}
	}
	v.Set(s)
}

func kindWord(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Struct:
		return "a mapping"
	}
	return "a value"
}

func (d *decoder) dict(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping, got %s", describe(n))
		return
	}
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		d.fail(n, path, "internal error: cannot decode into %s", t)
		return
	}
	m := reflect.MakeMap(t)
	for _, p := range d.pairs(n, path) {
		kp := joinKey(path, p.key)
		d.keys[kp] = p.k
		e := reflect.New(t.Elem()).Elem()
		if isNull(resolve(p.v)) {
			d.fail(p.v, kp, "expected %s, got null", kindWord(t.Elem()))
			continue
		}
		d.decode(p.v, kp, e, false)
		m.SetMapIndex(reflect.ValueOf(p.key).Convert(t.Key()), e)
	}
	v.Set(m)
}

// readSchemaFiles reads each pool's contract.schema_file, relative to dir,
// into Contract.Schema, and replaces SchemaFile by the path it read.
func (d *decoder) readSchemaFiles(c *Config, dir string) {
	for i := range c.Pools {
		ct := &c.Pools[i].Contract
		if ct.SchemaFile == "" || len(ct.Schema) > 0 {
			continue // nothing to read, or both set: validation says so
		}
		path := joinKey(joinKey(joinIndex("pools", i), "contract"), "schema_file")
		n := d.nodes[path]
		file := ct.SchemaFile
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		data, err := readRegular(file, maxSchemaFileBytes)
		if err != nil {
			d.fail(n, path, "%v", err)
			continue
		}
		if !json.Valid(data) {
			var v any
			err := json.Unmarshal(data, &v)
			d.fail(n, path, "%s is not JSON: %v", file, err)
			continue
		}
		ct.SchemaFile = file
		ct.Schema = json.RawMessage(data)
	}
}

// readRegular reads a regular file of at most limit bytes: a schema_file
// naming a FIFO or /dev/zero must not hang or exhaust the daemon.
func readRegular(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %s", name, FormatSize(limit))
	}
	return data, nil
}
