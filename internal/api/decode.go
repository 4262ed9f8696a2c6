package api

import (
	"encoding/json"
	"strconv"

	"github.com/resilienced/resilienced/internal/jsonscan"
)

// decodeCallFast decodes a call (a CallRequest, or with withID a
// StreamCall) the way the strict encoding/json path does, for the shape
// clients send: one object whose keys are the fields' exact names, each
// once, with plain ASCII strings. It reports false for anything else
// (unknown, duplicate or differently cased keys, escapes, null, bad JSON,
// trailing data), and the caller then decodes with encoding/json, which
// gives the error or the odd case its answer. On the call path this saves
// encoding/json's reflection and its decoder's allocations (1.8 µs and 12
// allocations against 0.14 µs and 3, BenchmarkDecodeCall);
// FuzzDecodeCall checks that both agree whenever the hand-written one
// answers.
func decodeCallFast(b []byte, withID bool) (call StreamCall, ok bool) {
	_, ok = jsonscan.Fields(b, callFields, func(field int, val []byte) (good bool) {
		switch field {
		case 0:
			call.ID, good = json.RawMessage(clone(val)), withID
		case 1:
			call.Input, good = json.RawMessage(clone(val)), true
		case 2:
			call.Session, good = jsonscan.PlainString(val)
		case 3:
			call.Key, good = jsonscan.PlainString(val)
		case 4:
			call.Timeout, good = jsonscan.PlainString(val)
		}
		return good
	})
	return call, ok
}

var callFields = []string{"id", "input", "session", "key", "timeout"}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// decodeAnswerFast decodes a call stream's answer to a call that
// succeeded, as json.Unmarshal into a StreamAnswer would: an object with
// an "id", an "output" that is not null, and any of "agent", "attempts",
// "cached", "seq" in their plain forms. Anything else (an error answer, a
// violation list, escapes) reports false, for encoding/json to decode.
// FuzzDecodeAnswer checks that both agree whenever this one answers.
func decodeAnswerFast(line []byte) (a StreamAnswer, ok bool) { return decodeResponseFast(line, true) }

// decodeResponseFast is decodeAnswerFast, and without withID the same for
// a single call's answer: a CallResponse, with no "id".
func decodeResponseFast(line []byte, withID bool) (a StreamAnswer, ok bool) {
	var r CallResponse
	seen, ok := jsonscan.Fields(line, answerFields, func(field int, val []byte) (good bool) {
		switch field {
		case 0:
			a.ID, good = json.RawMessage(clone(val)), withID
		case 1:
			r.Output, good = json.RawMessage(clone(val)), true
		case 2:
			r.Agent, good = jsonscan.PlainString(val)
		case 3:
			n, err := strconv.ParseInt(string(val), 10, 0)
			r.Attempts, good = int(n), err == nil && val[0] != '+'
		case 4:
			r.Cached, good = string(val) == "true", string(val) == "true" || string(val) == "false"
		case 5:
			var err error
			r.Seq, err = strconv.ParseUint(string(val), 10, 64)
			good = err == nil && val[0] != '+'
		}
		return good
	})
	if !ok || seen&1 == 0 && withID || seen&2 == 0 {
		return StreamAnswer{}, false
	}
	a.CallResponse = &r
	return a, true
}

var answerFields = []string{"id", "output", "agent", "attempts", "cached", "seq"}
