package fdlimit

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Raise sets the soft open-file limit to the hard one and returns it.
func Raise() (uint64, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("fdlimit: getrlimit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("fdlimit: setrlimit: %w", err)
		}
	}
	return lim.Cur, nil
}

// Open is how many descriptors this process has open now.
func Open() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents) - 1 // the directory being read
}
