package arbiter

import "errors"

// Errors returned by [Arbiter.UnmarshalModel]. Callers test them with
// errors.Is; on either, the stored model should be discarded and the
// Arbiter starts again from its hand-set weights.
var (
	// ErrModelMismatch: the stored model was made by another version of
	// the package (another format or another set of features).
	ErrModelMismatch = errors.New("arbiter model does not match this version")
	// ErrModelCorrupt: the stored model is not valid.
	ErrModelCorrupt = errors.New("arbiter model is corrupt")
)
