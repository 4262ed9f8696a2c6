package contract

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want any
	}{
		{`null`, nil},
		{` true `, true},
		{`false`, false},
		{`0`, json.Number("0")},
		{`-12.5e+3`, json.Number("-12.5e+3")},
		{`1E-2`, json.Number("1E-2")},
		{`""`, ""},
		{`"a\"b\\c\/d\b\f\n\r\t"`, "a\"b\\c/d\b\f\n\r\t"},
		{`"\u00e9\u20AC"`, "é€"},
		{`"\ud83d\ude00"`, "😀"},
		{`"\ud83d"`, "\uFFFD"},
		{`"\ud83dx"`, "\uFFFDx"},
		{`"\ud83d\u0041"`, "\uFFFDA"},
		{`"\ude00"`, "\uFFFD"},
		{`"héllo ☃"`, "héllo ☃"},
		{`[]`, []any{}},
		{`{}`, map[string]any{}},
		{`[1, "a", [null], {"k": {}}]`, []any{json.Number("1"), "a", []any{nil}, map[string]any{"k": map[string]any{}}}},
		{`{"a": 1, "a": 2}`, map[string]any{"a": json.Number("2")}},
	}
	for _, tt := range tests {
		got, v := parse([]byte(tt.in))
		if v != nil {
			t.Errorf("parse(%s): %v", tt.in, v)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parse(%s) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{``, "output is empty"},
		{`{"a" 1}`, `invalid character '1' at byte 5, expecting ':'`},
		{`{"a":1,}`, `invalid character '}' at byte 7, expecting a string key`},
		{`[1,]`, `invalid character ']' at byte 3, expecting a value`},
		{`[1 2]`, `invalid character '2' at byte 3, expecting ',' or ']'`},
		{`{"a":1 "b":2}`, `invalid character '"' at byte 7, expecting ',' or '}'`},
		{`01`, `trailing data after the JSON value at byte 1`},
		{`-`, `unexpected end of JSON at byte 1 (truncated), expecting a digit`},
		{`1.`, `unexpected end of JSON at byte 2 (truncated), expecting a digit`},
		{`1.e5`, `invalid character 'e' at byte 2, expecting a digit`},
		{`1e`, `unexpected end of JSON at byte 2 (truncated), expecting a digit`},
		{`+1`, `invalid character '+' at byte 0, expecting a value`},
		{`nul`, `unexpected end of JSON at byte 3 (truncated), expecting "null"`},
		{`'a'`, `invalid character '\'' at byte 0, expecting a value`},
		{"\"a\nb\"", `control character U+000A in string at byte 2`},
		{`"\x"`, `invalid escape 'x' in string at byte 1`},
		{`"\u12g4"`, `invalid character 'g' at byte 5, expecting a hex digit`},
		{`"\u12`, `unexpected end of JSON at byte 5 (truncated), expecting a hex digit`},
		{`"abc\`, `unexpected end of JSON at byte 5 (truncated), expecting an escape`},
		{"\"a\xffb\"", `invalid UTF-8 at byte 2`},
		{"\xef\xbb\xbf{}", `invalid character byte 0xEF at byte 0, expecting a value`},
		{strings.Repeat("[", maxDepth+1), `nesting deeper than 10000 at byte 10000`},
	}
	for _, tt := range tests {
		_, v := parse([]byte(tt.in))
		if v == nil {
			t.Errorf("parse(%q) = valid, want %s", tt.in, tt.want)
			continue
		}
		if v.Code != CodeInvalidJSON || v.Message != tt.want {
			t.Errorf("parse(%q) = %v, want invalid_json: %s", tt.in, v, tt.want)
		}
	}
	// Nesting up to the limit is fine.
	deep := strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth)
	if _, v := parse([]byte(deep)); v != nil {
		t.Errorf("parse(%d nested arrays): %v", maxDepth, v)
	}
}

// FuzzParse checks parse against encoding/json: both accept the same
// documents (valid UTF-8 aside, which encoding/json does not require) and
// decode them to the same value.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{"answer":"x","n":[1,2.5,-3e2,true,false,null]}`, `"\ud83d\ude00\ud83d\u0041\\"`,
		`{"a":1,"a":{}}`, `-0.0E+00`, ` [ ] `, `{"a":"é\u00e9"}`, `[01]`, `"\u"`, "\"\x7f\"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, viol := parse(in)

		dec := json.NewDecoder(bytes.NewReader(in))
		dec.UseNumber()
		var want any
		err := dec.Decode(&want)
		// One value only; trailing whitespace is allowed.
		if err == nil && len(bytes.TrimLeft(in[dec.InputOffset():], " \t\r\n")) > 0 {
			err = errors.New("trailing data")
		}
		stdOK := err == nil && utf8.Valid(in)
		if (viol == nil) != stdOK {
			t.Fatalf("parse(%q): violation %v, encoding/json error %v, utf8 valid %v", in, viol, err, utf8.Valid(in))
		}
		if viol == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("parse(%q) = %#v, encoding/json = %#v", in, got, want)
		}
		if viol != nil && (viol.Code != CodeInvalidJSON || strings.ContainsAny(viol.Message, "\r\n")) {
			t.Fatalf("parse(%q): bad violation %#v", in, viol)
		}
	})
}
