package config

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// TestEqualEveryField changes each field of a pool and of a group in
// turn, nested ones included, and checks that Equal sees it, so that a
// reload applies every key, including keys added later. The one exception
// is where a schema was read from: the same schema from a file or inline
// is the same contract.
func TestEqualEveryField(t *testing.T) {
	mkPool := func() Pool {
		p := DefaultPool()
		p.Name, p.Command = "a", []string{"x"}
		p.Env = map[string]string{"A": "1"}
		p.Network.Allow = []string{"10.0.0.0/8"}
		p.Contract.Schema = json.RawMessage(`{"type":"object"}`)
		return p
	}
	refP, p := mkPool(), mkPool()
	n := everyField(t, &p, map[string]bool{"Contract.SchemaFile": true}, func() bool { return refP.Equal(p) || p.Equal(refP) })
	if n < 40 {
		t.Errorf("pool: only %d fields walked", n)
	}
	if !refP.Equal(p) {
		t.Error("pool: every field restored: want Equal")
	}

	mkGroup := func() Group {
		g := DefaultGroup()
		g.Name, g.Children = "g", []string{"a"}
		return g
	}
	refG, g := mkGroup(), mkGroup()
	everyField(t, &g, nil, func() bool { return refG.Equal(g) || g.Equal(refG) })
	if !refG.Equal(g) {
		t.Error("group: every field restored: want Equal")
	}
}

// everyField perturbs each leaf field of *ptr, but those in ignored, in
// turn, reports the ones for which equal still holds, restores it, and
// returns how many it changed.
func everyField(t *testing.T, ptr any, ignored map[string]bool, equal func() bool) int {
	t.Helper()
	n := 0
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		for i := range v.NumField() {
			name := prefix + v.Type().Field(i).Name
			f := v.Field(i)
			if f.Kind() == reflect.Struct {
				walk(name+".", f)
				continue
			}
			if ignored[name] {
				continue
			}
			old := reflect.New(f.Type()).Elem()
			old.Set(f)
			perturb(t, name, f)
			n++
			if equal() {
				t.Errorf("%T.%s changed: Equal still true", ptr, name)
			}
			f.Set(old)
		}
	}
	walk("", reflect.ValueOf(ptr).Elem())
	return n
}

// perturb changes v to a different value of its type.
func perturb(t *testing.T, name string, v reflect.Value) {
	switch {
	case v.Type() == durationType:
		v.SetInt(v.Int() + int64(time.Millisecond))
	case v.Type() == rawJSONType:
		v.SetBytes([]byte(`{"type":"string"}`))
	case v.Kind() == reflect.String:
		v.SetString(v.String() + "x")
	case v.Kind() == reflect.Int, v.Kind() == reflect.Int64:
		v.SetInt(v.Int() + 1)
	case v.Kind() == reflect.Float64:
		v.SetFloat(v.Float() / 2)
	case v.Kind() == reflect.Bool:
		v.SetBool(!v.Bool())
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		v.Set(reflect.Append(reflect.AppendSlice(reflect.MakeSlice(v.Type(), 0, v.Len()+1), v), reflect.ValueOf("x")))
	case v.Kind() == reflect.Map:
		m := reflect.MakeMap(v.Type())
		for _, k := range v.MapKeys() {
			m.SetMapIndex(k, v.MapIndex(k))
		}
		m.SetMapIndex(reflect.ValueOf("NEW"), reflect.ValueOf("x"))
		v.Set(m)
	default:
		t.Fatalf("%s: cannot perturb a %s: teach the test", name, v.Type())
	}
}
