package contract

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Code classifies a [Violation]. Codes are stable strings: they appear in
// events, metrics labels, the API and feedback sent back to agents.
type Code string

// Violation codes. [Contract.Check] returns the first four; the supervisor
// builds the others with [NewViolation].
const (
	// CodeInvalidJSON: the output is not exactly one JSON value, or is not
	// valid UTF-8.
	CodeInvalidJSON Code = "invalid_json"
	// CodeSchema: the output does not validate against the schema.
	CodeSchema Code = "schema"
	// CodeTooLarge: the output is larger than MaxOutputBytes.
	CodeTooLarge Code = "too_large"
	// CodeTokens: the output's token count is above MaxTokens.
	CodeTokens Code = "tokens"
	// CodeDeadline: no output before the deadline.
	CodeDeadline Code = "deadline"
	// CodeProtocol: the agent broke the JSON-RPC protocol (a reply that is
	// not a JSON-RPC response, a wrong id, an error reply).
	CodeProtocol Code = "protocol"
	// CodeExit: the agent exited or was killed during the call.
	CodeExit Code = "exit"
)

// maxMessage caps Violation.Message so that a violation stays one readable
// log line whatever the agent wrote.
const maxMessage = 200

// Violation is an output, or the absence of one, that breaks a contract.
// It is an error; [AsViolation] finds it in a wrapped chain.
type Violation struct {
	Code Code
	// Message says what is wrong, in one line of at most about 200 bytes.
	Message string
	// Path is the JSON pointer of the failing value in the output, for
	// CodeSchema ("" is the whole output).
	Path string
	// Keyword is the JSON pointer of the failing keyword in the schema, for
	// CodeSchema, e.g. "/properties/answer/type".
	Keyword string
}

// Error returns "code: message", e.g. "schema: at /answer: got number, want string".
func (v *Violation) Error() string {
	return string(v.Code) + ": " + v.Message
}

// NewViolation returns a violation whose message is formatted like
// [fmt.Sprintf], flattened to one line and capped in length.
func NewViolation(code Code, format string, args ...any) *Violation {
	return &Violation{Code: code, Message: oneLine(fmt.Sprintf(format, args...))}
}

// AsViolation reports whether err is, or wraps, a [*Violation], and returns it.
func AsViolation(err error) (*Violation, bool) {
	var v *Violation
	if errors.As(err, &v) && v != nil {
		return v, true
	}
	return nil, false
}

// oneLine replaces line breaks and other control characters with spaces,
// repairs invalid UTF-8 and truncates s to about maxMessage bytes on a rune
// boundary, marking the cut with "…".
func oneLine(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c >= utf8.RuneSelf {
			clean = false
			break
		}
	}
	if clean && len(s) <= maxMessage {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), maxMessage+len("…")))
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > maxMessage {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
