package ring

import "errors"

var (
	// ErrInvalidState is returned for a State that is not one of the five
	// defined states.
	ErrInvalidState = errors.New("ring: invalid member state")
	// ErrMemberExists is returned by Add for a member already on the ring.
	ErrMemberExists = errors.New("ring: member already exists")
	// ErrUnknownMember is returned by SetState for a member not on the ring.
	ErrUnknownMember = errors.New("ring: unknown member")
	// ErrInvalidOptions is returned by Options.Validate for a negative
	// VirtualNodes or a negative or NaN Epsilon.
	ErrInvalidOptions = errors.New("ring: invalid options")
)
