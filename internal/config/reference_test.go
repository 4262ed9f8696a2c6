package config

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// refKey is a key of the configuration found by walking the structs, with
// its default taken from Default, DefaultPool and DefaultGroup.
type refKey struct {
	path string
	typ  string
	def  string
}

// walkKeys lists every key of the configuration file, in struct order.
func walkKeys() []refKey {
	var keys []refKey
	var walk func(prefix string, t reflect.Type, def reflect.Value)
	walk = func(prefix string, t reflect.Type, def reflect.Value) {
		for _, f := range fieldsOf(t) {
			path := prefix + f.key
			ft := t.Field(f.index).Type
			dv := def.Field(f.index)
			switch {
			case ft.Kind() == reflect.Struct && ft != durationType:
				keys = append(keys, refKey{path, "mapping", ""})
				if ft == contractType {
					// Schema has no yaml tag: the decoder reads the key itself.
					keys = append(keys, refKey{path + ".schema", "JSON Schema", ""})
				}
				walk(path+".", ft, dv)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				keys = append(keys, refKey{path, "list of mappings", ""})
				var elem reflect.Value
				switch ft.Elem() {
				case poolType:
					elem = reflect.ValueOf(DefaultPool())
				case groupType:
					elem = reflect.ValueOf(DefaultGroup())
				default:
					elem = reflect.New(ft.Elem()).Elem()
				}
				walk(path+"[].", ft.Elem(), elem)
			default:
				keys = append(keys, refKey{path, typeName(ft, f.size), formatDefault(dv, f.size)})
			}
		}
	}
	walk("", reflect.TypeFor[Config](), reflect.ValueOf(*Default()))
	return keys
}

func typeName(t reflect.Type, size bool) string {
	if vals, ok := enumValues[t]; ok {
		return vals
	}
	switch {
	case t == durationType:
		return "duration"
	case t == rawJSONType:
		return "JSON Schema"
	case size:
		return "size"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int64:
		return "integer"
	case reflect.Float64:
		return "number"
	case reflect.Slice:
		return "list of strings"
	case reflect.Map:
		return "map of strings"
	}
	return t.String()
}

// formatDefault writes a default the way a file would.
func formatDefault(v reflect.Value, size bool) string {
	switch {
	case v.Type() == durationType:
		return formatDuration(time.Duration(v.Int()))
	case size && v.Int() != 0:
		return FormatSize(v.Int())
	}
	switch v.Kind() {
	case reflect.String:
		if v.String() == "" {
			return `""`
		}
		return v.String()
	case reflect.Int, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case reflect.Slice:
		return "[]"
	case reflect.Map:
		return "{}"
	}
	return v.String()
}

// formatDuration is time.Duration.String without its zero units: "1m",
// not "1m0s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// TestReferenceComplete fails when a key of the Config structs has no entry
// in Reference, when an entry names no key, or when an entry's type or
// default disagrees with the structs and defaults.
func TestReferenceComplete(t *testing.T) {
	keys := walkKeys()
	ref := map[string]Field{}
	var order []string
	for _, f := range Reference {
		if _, dup := ref[f.Key]; dup {
			t.Errorf("%s: listed twice", f.Key)
		}
		ref[f.Key] = f
		order = append(order, f.Key)
		if f.Doc == "" || strings.Contains(f.Doc, "\n") {
			t.Errorf("%s: the doc must be one line", f.Key)
		}
	}
	var walked []string
	for _, k := range keys {
		walked = append(walked, k.path)
		f, ok := ref[k.path]
		if !ok {
			t.Errorf("%s (%s, default %s): no entry in Reference", k.path, k.typ, k.def)
			continue
		}
		if f.Type != k.typ {
			t.Errorf("%s: Reference says type %q, the structs %q", k.path, f.Type, k.typ)
		}
		if !defaultAgrees(k, f.Default) {
			t.Errorf("%s: Reference says default %q, the defaults %q", k.path, f.Default, k.def)
		}
	}
	for _, f := range Reference {
		if !slices.Contains(walked, f.Key) {
			t.Errorf("%s: in Reference but not a key of the structs", f.Key)
		}
	}
	if !slices.Equal(order, walked) {
		t.Errorf("Reference is not in struct order:\ngot  %v\nwant %v", order, walked)
	}
}

// defaultAgrees: the documented default is the real one, or the real one
// with a note ("0 (off)"), or, for a key without a default (an empty string
// or list), says what then happens; max_spares follows spares.
func defaultAgrees(k refKey, doc string) bool {
	switch {
	case k.typ == "mapping" || k.typ == "list of mappings":
		return doc == ""
	case doc == k.def, strings.HasPrefix(doc, k.def+" ("):
		return true
	case k.def == `""` || k.def == "[]" || k.def == "":
		return doc != ""
	}
	return k.path == "pools[].max_spares" && doc == "spares"
}
