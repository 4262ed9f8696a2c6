// Command resilientctl drives resilienced over its local socket.
//
// Exit codes: 0 ok; 1 the daemon answered with an error or the call
// failed; 2 usage; 3 the daemon cannot be reached.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/resilienced/resilienced/internal/api"
)

var version = "0.1.0-dev"

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitUnreachable = 3
)

// usageError marks a mistake in the command line.
type usageError struct{ error }

func main() {
	os.Exit(run(context.Background(), os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	root := newRoot()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "resilientctl:", err)
	var ue usageError
	var unreach *api.UnreachableError
	switch {
	case errors.As(err, &ue), isCobraUsage(err):
		return exitUsage
	case errors.As(err, &unreach):
		return exitUnreachable
	}
	return exitFailed
}
