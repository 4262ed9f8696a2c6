package contract

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds nesting, as encoding/json does, so that a hostile output
// cannot make Check recurse without limit.
const maxDepth = 10000

// parse decodes output as exactly one JSON value (RFC 8259) in valid UTF-8,
// optionally surrounded by whitespace, into the types the schema validator
// expects: nil, bool, json.Number, string, []any and map[string]any.
//
// It replaces encoding/json's Decoder on the call path: one pass, fewer
// allocations, and errors that carry the byte offset of the first bad byte.
// FuzzParse checks it against encoding/json.
func parse(output []byte) (any, *Violation) {
	p := parser{data: output}
	p.skipSpace()
	if p.pos == len(p.data) {
		return nil, &Violation{Code: CodeInvalidJSON, Message: "output is empty"}
	}
	v := p.value(0)
	if p.err != nil {
		return nil, p.err
	}
	p.skipSpace()
	if p.pos < len(p.data) {
		return nil, &Violation{Code: CodeInvalidJSON,
			Message: fmt.Sprintf("trailing data after the JSON value at byte %d", p.pos)}
	}
	return v, nil
}

type parser struct {
	data []byte
	pos  int
	err  *Violation
}

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// fail records the first error; the parser unwinds by returning nil.
func (p *parser) fail(format string, args ...any) {
	if p.err == nil {
		p.err = &Violation{Code: CodeInvalidJSON, Message: oneLine(fmt.Sprintf(format, args...))}
	}
}

// unexpected reports the byte at p.pos, or the end of the output.
func (p *parser) unexpected(want string) {
	if p.pos >= len(p.data) {
		p.fail("unexpected end of JSON at byte %d (truncated), expecting %s", p.pos, want)
		return
	}
	p.fail("invalid character %s at byte %d, expecting %s", quoteByte(p.data[p.pos]), p.pos, want)
}

func quoteByte(c byte) string {
	switch {
	case c == '\'':
		return `'\''`
	case c >= 0x20 && c < 0x7f:
		return "'" + string(c) + "'"
	case c < utf8.RuneSelf:
		return fmt.Sprintf("U+%04X", c)
	default:
		return fmt.Sprintf("byte 0x%02X", c)
	}
}

func (p *parser) value(depth int) any {
	if p.pos >= len(p.data) {
		p.unexpected("a value")
		return nil
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(depth + 1)
	case c == '[':
		return p.array(depth + 1)
	case c == '"':
		s, ok := p.string()
		if !ok {
			return nil
		}
		return s
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == 't':
		return p.literal("true", true)
	case c == 'f':
		return p.literal("false", false)
	case c == 'n':
		return p.literal("null", nil)
	default:
		p.unexpected("a value")
		return nil
	}
}

func (p *parser) literal(word string, v any) any {
	for i := 0; i < len(word); i++ {
		if p.pos >= len(p.data) || p.data[p.pos] != word[i] {
			p.unexpected(strconv.Quote(word))
			return nil
		}
		p.pos++
	}
	return v
}

func (p *parser) object(depth int) any {
	if depth > maxDepth {
		p.fail("nesting deeper than %d at byte %d", maxDepth, p.pos)
		return nil
	}
	p.pos++ // {
	obj := make(map[string]any)
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return obj
	}
	for {
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			p.unexpected("a string key")
			return nil
		}
		key, ok := p.string()
		if !ok {
			return nil
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			p.unexpected("':'")
			return nil
		}
		p.pos++
		p.skipSpace()
		v := p.value(depth)
		if p.err != nil {
			return nil
		}
		obj[key] = v // the last of duplicate keys wins, as in encoding/json
		p.skipSpace()
		if p.pos < len(p.data) {
			switch p.data[p.pos] {
			case ',':
				p.pos++
				p.skipSpace()
				continue
			case '}':
				p.pos++
				return obj
			}
		}
		p.unexpected("',' or '}'")
		return nil
	}
}

func (p *parser) array(depth int) any {
	if depth > maxDepth {
		p.fail("nesting deeper than %d at byte %d", maxDepth, p.pos)
		return nil
	}
	p.pos++ // [
	arr := []any{}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return arr
	}
	for {
		v := p.value(depth)
		if p.err != nil {
			return nil
		}
		arr = append(arr, v)
		p.skipSpace()
		if p.pos < len(p.data) {
			switch p.data[p.pos] {
			case ',':
				p.pos++
				p.skipSpace()
				continue
			case ']':
				p.pos++
				return arr
			}
		}
		p.unexpected("',' or ']'")
		return nil
	}
}

func (p *parser) number() any {
	start := p.pos
	d := p.data
	if d[p.pos] == '-' {
		p.pos++
	}
	switch {
	case p.pos < len(d) && d[p.pos] == '0':
		p.pos++
	case p.pos < len(d) && d[p.pos] >= '1' && d[p.pos] <= '9':
		p.digits()
	default:
		p.unexpected("a digit")
		return nil
	}
	if p.pos < len(d) && d[p.pos] == '.' {
		p.pos++
		if p.pos >= len(d) || d[p.pos] < '0' || d[p.pos] > '9' {
			p.unexpected("a digit")
			return nil
		}
		p.digits()
	}
	if p.pos < len(d) && (d[p.pos] == 'e' || d[p.pos] == 'E') {
		p.pos++
		if p.pos < len(d) && (d[p.pos] == '+' || d[p.pos] == '-') {
			p.pos++
		}
		if p.pos >= len(d) || d[p.pos] < '0' || d[p.pos] > '9' {
			p.unexpected("a digit")
			return nil
		}
		p.digits()
	}
	return json.Number(d[start:p.pos])
}

func (p *parser) digits() {
	for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
		p.pos++
	}
}

// string decodes the string starting at the quote at p.pos.
func (p *parser) string() (string, bool) {
	d := p.data
	start := p.pos + 1
	// Fast path: plain ASCII without escapes is the common case.
	i := start
	for i < len(d) {
		c := d[i]
		if c == '"' {
			p.pos = i + 1
			return string(d[start:i]), true
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		i++
	}
	buf := make([]byte, i-start, i-start+16)
	copy(buf, d[start:i])
	for i < len(d) {
		c := d[i]
		switch {
		case c == '"':
			p.pos = i + 1
			return string(buf), true
		case c < 0x20:
			p.pos = i
			p.fail("control character %s in string at byte %d", quoteByte(c), i)
			return "", false
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && n == 1 {
				p.pos = i
				p.fail("invalid UTF-8 at byte %d", i)
				return "", false
			}
			buf = append(buf, d[i:i+n]...)
			i += n
		case c == '\\':
			if i+1 >= len(d) {
				p.pos = i + 1
				p.unexpected("an escape")
				return "", false
			}
			switch e := d[i+1]; e {
			case '"', '\\', '/':
				buf = append(buf, e)
				i += 2
			case 'b':
				buf = append(buf, '\b')
				i += 2
			case 'f':
				buf = append(buf, '\f')
				i += 2
			case 'n':
				buf = append(buf, '\n')
				i += 2
			case 'r':
				buf = append(buf, '\r')
				i += 2
			case 't':
				buf = append(buf, '\t')
				i += 2
			case 'u':
				r, ok := p.hex4(i + 2)
				if !ok {
					return "", false
				}
				i += 6
				if utf16.IsSurrogate(r) {
					// A high surrogate followed by a low one is one rune;
					// anything else is U+FFFD, as in encoding/json.
					if i+1 < len(d) && d[i] == '\\' && d[i+1] == 'u' {
						if r2, ok := p.hex4(i + 2); !ok {
							return "", false
						} else if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							r = dec
							i += 6
						} else {
							r = utf8.RuneError
						}
					} else {
						r = utf8.RuneError
					}
				}
				buf = utf8.AppendRune(buf, r)
			default:
				p.pos = i + 1
				p.fail("invalid escape %s in string at byte %d", quoteByte(e), i)
				return "", false
			}
		default:
			buf = append(buf, c)
			i++
		}
	}
	p.pos = len(d)
	p.unexpected("'\"'")
	return "", false
}

// hex4 decodes the four hex digits of a \u escape starting at i.
func (p *parser) hex4(i int) (rune, bool) {
	var r rune
	for j := i; j < i+4; j++ {
		if j >= len(p.data) {
			p.pos = j
			p.unexpected("a hex digit")
			return 0, false
		}
		c := p.data[j]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			p.pos = j
			p.unexpected("a hex digit")
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
