package contract

import "errors"

// Errors returned by [Compile]. Violations of a contract are not sentinel
// errors: they are [*Violation] values, matched with [AsViolation].
var (
	// ErrInvalidSpec is wrapped by every error from [Compile]: the schema is
	// not JSON, does not validate against its metaschema, refers to an
	// external document, or a limit is negative.
	ErrInvalidSpec = errors.New("invalid contract")
)
