package api

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/resilienced/resilienced/internal/leakcheck"
)

// strictDecode is the encoding/json path that decodeCallFast stands in for.
func strictDecode(b []byte, withID bool) (StreamCall, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var call StreamCall
	var err error
	if withID {
		err = dec.Decode(&call)
	} else {
		err = dec.Decode(&call.CallRequest)
	}
	if err == nil && dec.More() {
		err = errMore
	}
	return call, err
}

var errMore = &Error{Code: CodeBadRequest, Message: "more than one JSON value"}

var decodeSeeds = []string{
	`{"id":1,"input":"what is the capital of France?"}`,
	`{"id":"a-7","input":{"q":[1,2.5e3,-0.1,true,false,null,"\u00e9\n"]},"session":"s1","key":"k1","timeout":"5s"}`,
	` { "input" : [ ] , "id" : -0 } `,
	`{"input":{}}`,
	`{}`,
	`{"input":"x","session":"caf\u00e9"}`,
	`{"input":"x","Session":"s"}`,
	`{"input":"x","input":"y"}`,
	`{"input":"x","extra":1}`,
	`{"input":null,"id":1}`,
	`{"id":null,"input":1}`,
	`{"input":"x"} {"input":"y"}`,
	`{"input":"x"}]`,
	`{"input":01}`,
	`{"input":1.}`,
	`{"input":"a` + "\x01" + `"}`,
	`{"input":"\x"}`,
	`{"input":[1,]}`,
	`{"input":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`,
	`{"session":1,"input":2}`,
	`{"input":"é","key":"é"}`,
	`[]`,
	`"str"`,
	``,
}

// TestDecodeCallFast: the fast path answers for what clients send, and
// gives exactly what encoding/json gives.
func TestDecodeCallFast(t *testing.T) {
	leakcheck.Check(t)
	for _, withID := range []bool{true, false} {
		line := `{"id":1,"input":"q","session":"s","key":"k","timeout":"2s"}`
		if !withID {
			line = `{"input":"q","session":"s","key":"k","timeout":"2s"}`
		}
		got, ok := decodeCallFast([]byte(line), withID)
		if !ok {
			t.Fatalf("withID=%v: the fast path refused %s", withID, line)
		}
		want, err := strictDecode([]byte(line), withID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("withID=%v: fast %+v, encoding/json %+v", withID, got, want)
		}
	}
	// Refused, to be answered by encoding/json.
	for _, line := range []string{
		`{"input":"x","Session":"s"}`, // encoding/json matches keys without case
		`{"input":"x","input":"y"}`,   // the last wins there
		`{"input":"x","session":"\u00e9"}`,
		`{"input":null}`,
		`{"id":1,"input":"x"}`, // no id in a single call's body: unknown field
		`{"input":"x"} {}`,
		`{"input":01}`,
	} {
		if _, ok := decodeCallFast([]byte(line), false); ok {
			t.Errorf("the fast path took %s", line)
		}
	}
	for _, s := range decodeSeeds {
		checkDecodeAgrees(t, []byte(s))
	}
}

func checkDecodeAgrees(t *testing.T, b []byte) {
	t.Helper()
	for _, withID := range []bool{true, false} {
		got, ok := decodeCallFast(b, withID)
		if !ok {
			continue
		}
		want, err := strictDecode(b, withID)
		if err != nil {
			t.Fatalf("withID=%v: the fast path took %q, which encoding/json refuses: %v", withID, b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("withID=%v: %q: fast %#v, encoding/json %#v", withID, b, got, want)
		}
	}
}

// FuzzDecodeCall: whenever the fast path answers, encoding/json accepts
// the same bytes and decodes the same call.
//
//	go test -run '^$' -fuzz FuzzDecodeCall -fuzztime 60s ./internal/api/
func FuzzDecodeCall(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecodeAgrees(t, b)
	})
}

func BenchmarkDecodeCall(b *testing.B) {
	line := []byte(`{"id":17,"input":"what is the capital of France?","session":"user-42"}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, ok := decodeCallFast(line, true); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := strictDecode(line, true); err != nil {
				b.Fatal(err)
			}
		}
	})
}

var answerSeeds = []string{
	`{"id":1,"output":{"answer":"Paris","context_len":0},"agent":"bench-3","attempts":1}`,
	`{"id":"a","output":"x","agent":"p-1","attempts":2,"cached":true,"seq":17}`,
	`{"output":1,"id":2,"cached":false}`,
	`{"id":1,"status":503,"line":4,"error":{"code":"unavailable","message":"m"}}`,
	`{"id":1,"output":null}`,
	`{"id":1,"output":1,"attempts":1.5}`,
	`{"id":1,"output":1,"attempts":"1"}`,
	`{"id":1,"output":1,"attempts":99999999999999999999}`,
	`{"id":1,"output":1,"seq":-1}`,
	`{"id":1,"output":1,"cached":1}`,
	`{"id":1,"output":1,"agent":"\u00e9"}`,
	`{"id":1,"output":1,"violations":[]}`,
	`{"output":1}`,
	`{"id":1,"output":1,"Agent":"x"}`,
}

func checkAnswerAgrees(t *testing.T, b []byte) {
	t.Helper()
	got, ok := decodeAnswerFast(b)
	if !ok {
		return
	}
	var want StreamAnswer
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatalf("%q: the fast path took it, encoding/json says %v", b, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: fast %#v %#v, encoding/json %#v %#v", b, got, got.CallResponse, want, want.CallResponse)
	}
}

func TestDecodeAnswerFast(t *testing.T) {
	leakcheck.Check(t)
	for _, s := range answerSeeds[:3] {
		if _, ok := decodeAnswerFast([]byte(s)); !ok {
			t.Errorf("the fast path refused %s", s)
		}
	}
	for _, s := range answerSeeds[3:] {
		if _, ok := decodeAnswerFast([]byte(s)); ok {
			t.Errorf("the fast path took %s", s)
		}
	}
	for _, s := range answerSeeds {
		checkAnswerAgrees(t, []byte(s))
	}
}

// FuzzDecodeAnswer: whenever the fast path answers, encoding/json gives
// the same answer.
//
//	go test -run '^$' -fuzz FuzzDecodeAnswer -fuzztime 60s ./internal/api/
func FuzzDecodeAnswer(f *testing.F) {
	for _, s := range answerSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkAnswerAgrees(t, b) })
}
