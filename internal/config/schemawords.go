package config

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
)

// JSON Schema keywords (drafts 4 to 2020-12), by what their value holds.
// A compiler ignores keywords it does not know, so "requird: [answer]"
// makes a contract that checks nothing; the config refuses them instead
// ("x-" keys are left to their writers, as everywhere in the file).
var (
	// a schema
	schemaKeywords = set("not", "if", "then", "else", "items", "contains",
		"additionalProperties", "propertyNames", "unevaluatedItems",
		"unevaluatedProperties", "additionalItems", "contentSchema")
	// an array of schemas
	schemaListKeywords = set("allOf", "anyOf", "oneOf", "prefixItems")
	// an object of schemas
	schemaMapKeywords = set("properties", "patternProperties", "$defs",
		"definitions", "dependentSchemas", "dependencies")
	// anything else: values, not schemas
	valueKeywords = set("$schema", "$id", "id", "$ref", "$dynamicRef",
		"$dynamicAnchor", "$anchor", "$comment", "$vocabulary", "$recursiveRef",
		"$recursiveAnchor", "type", "enum", "const", "multipleOf", "maximum",
		"exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength",
		"minLength", "pattern", "maxItems", "minItems", "uniqueItems",
		"maxContains", "minContains", "maxProperties", "minProperties",
		"required", "dependentRequired", "title", "description", "default",
		"deprecated", "readOnly", "writeOnly", "examples", "format",
		"contentEncoding", "contentMediaType")
)

func set(ws ...string) map[string]bool {
	m := make(map[string]bool, len(ws))
	for _, w := range ws {
		m[w] = true
	}
	return m
}

// unknownKeywords returns a problem for every key of a schema object in
// raw that is no JSON Schema keyword, at the key itself.
func unknownKeywords(raw json.RawMessage) []schemaProblem {
	var doc any
	if json.Unmarshal(raw, &doc) != nil {
		return nil // the compiler reports it
	}
	var out []schemaProblem
	var walk func(s any, at []string)
	walk = func(s any, at []string) {
		obj, ok := s.(map[string]any)
		if !ok {
			return // true, false, or not a schema (the compiler says so)
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := obj[k]
			here := append(at[:len(at):len(at)], k)
			switch {
			case schemaKeywords[k]:
				if list, ok := v.([]any); ok && (k == "items" || k == "additionalItems") {
					for i, e := range list { // draft 4-7 tuple form
						walk(e, append(here[:len(here):len(here)], strconv.Itoa(i)))
					}
				} else {
					walk(v, here)
				}
			case schemaListKeywords[k]:
				list, _ := v.([]any)
				for i, e := range list {
					walk(e, append(here[:len(here):len(here)], strconv.Itoa(i)))
				}
			case schemaMapKeywords[k]:
				m, _ := v.(map[string]any)
				for name, e := range m {
					if _, isList := e.([]any); isList && k == "dependencies" {
						continue // property dependencies: names, not a schema
					}
					walk(e, append(here[:len(here):len(here)], name))
				}
			case valueKeywords[k], len(k) > 2 && k[:2] == "x-":
			default:
				msg := fmt.Sprintf("%q is not a JSON Schema keyword: a validator ignores it, so it checks nothing (prefix it with x- to keep it as a note)", k)
				if s := suggest(k, allKeywords()); s != "" {
					msg = fmt.Sprintf("%q is not a JSON Schema keyword; did you mean %q? (a validator ignores unknown keywords, so it would check nothing)", k, s)
				}
				out = append(out, schemaProblem{at: here, msg: msg})
			}
		}
	}
	walk(doc, nil)
	return out
}

func allKeywords() []string {
	var ws []string
	for _, m := range []map[string]bool{schemaKeywords, schemaListKeywords, schemaMapKeywords, valueKeywords} {
		for w := range m {
			ws = append(ws, w)
		}
	}
	sort.Strings(ws)
	return ws
}
