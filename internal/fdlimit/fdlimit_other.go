//go:build !linux

package fdlimit

import "errors"

// Raise is Linux only.
func Raise() (uint64, error) { return 0, errors.New("fdlimit: not supported on this OS") }

// Open is Linux only.
func Open() int { return 0 }
