package config

import (
	"cmp"
	"errors"
	"slices"
	"strconv"
	"strings"
)

// ErrInvalid is wrapped by every configuration error: an [*Error] and an
// [Errors] both satisfy errors.Is(err, ErrInvalid). A file that cannot be
// read at all is not invalid: [Load] wraps the os error instead.
var ErrInvalid = errors.New("invalid configuration")

// Error is one problem in a configuration file, at a key path and a position.
//
// Line and Column are 1-based. Column is 0 for YAML syntax errors, whose
// parser reports only the line; Line is 0 for errors found by
// [Config.Validate] on a Config that was not parsed from a file.
type Error struct {
	File   string
	Line   int
	Column int
	Path   string // key path, e.g. pools[1].contract.deadline; "" for the whole document
	Msg    string
}

// Error formats the error as `file:line:col: path: msg`, leaving out the
// parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	pos := e.File
	if e.Line > 0 {
		if pos != "" {
			pos += ":"
		}
		pos += strconv.Itoa(e.Line)
		if e.Column > 0 {
			pos += ":" + strconv.Itoa(e.Column)
		}
	}
	if pos != "" {
		b.WriteString(pos)
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns [ErrInvalid].
func (e *Error) Unwrap() error { return ErrInvalid }

// Errors is every problem found in one configuration, sorted by position.
// Parsing and validation go on after the first problem so that one run
// reports them all.
type Errors []*Error

// Error lists the errors one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual errors, each of which wraps [ErrInvalid], so
// that errors.Is(err, ErrInvalid) holds and errors.As finds the first [*Error].
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// sort orders the errors by position. It is stable so that errors at the same
// position keep the order they were found in.
func (es Errors) sort() {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}
