package cgroup

import (
	"bufio"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary a helper process instead of running tests.
const helperEnv = "RESILIENCED_CGROUP_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
	case "alloc":
		allocHelper()
		return
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(helperEnv))
		os.Exit(2)
	}
	// Become the subreaper of the double-forked grandchildren the tests make,
	// so they are reaped here rather than left as zombies under an init that
	// may not reap.
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	os.Exit(m.Run())
}

// allocHelper waits for a line on stdin (sent once the process is in all its
// cgroups), then touches 200 MiB.
func allocHelper() {
	bufio.NewReader(os.Stdin).ReadString('\n')
	var keep [][]byte
	for range 200 {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		keep = append(keep, b)
	}
	fmt.Println("survived", len(keep))
	os.Exit(0)
}
