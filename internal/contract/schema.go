package contract

import (
	"errors"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaViolation turns a validation error into one actionable line: the
// deepest failing location in the output (the first, among equals) and why
// it failed there. The library's full report lists every failing branch,
// which is rarely what a person or an agent asked to fix its output needs.
func schemaViolation(err error) *Violation {
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return &Violation{Code: CodeSchema, Message: oneLine(err.Error())}
	}
	out := verr.DetailedOutput()
	leaf := deepestLeaf(out)
	if leaf == nil || leaf.Error == nil {
		return &Violation{Code: CodeSchema, Message: oneLine(verr.Error())}
	}
	where := leaf.InstanceLocation
	at := where
	if at == "" {
		at = "root"
	}
	return &Violation{
		Code:    CodeSchema,
		Message: oneLine("at " + at + ": " + leaf.Error.String()),
		Path:    where,
		Keyword: leaf.KeywordLocation,
	}
}

// deepestLeaf returns the leaf unit with the longest instance location,
// the first one found on ties.
func deepestLeaf(u *jsonschema.OutputUnit) *jsonschema.OutputUnit {
	if len(u.Errors) == 0 {
		return u
	}
	var best *jsonschema.OutputUnit
	bestDepth := -1
	for i := range u.Errors {
		l := deepestLeaf(&u.Errors[i])
		if d := strings.Count(l.InstanceLocation, "/"); d > bestDepth {
			best, bestDepth = l, d
		}
	}
	return best
}
