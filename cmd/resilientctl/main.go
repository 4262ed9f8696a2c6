// Command resilientctl drives resilienced over its local socket.
//
// Exit codes: 0 ok; 1 the daemon answered with an error or the call
// failed; 2 usage; 3 the daemon cannot be reached.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	var ue usageError
	var unreach *api.UnreachableError
	code := exitFailed
	switch {
	case errors.As(err, &ue), isCobraUsage(err):
		code = exitUsage
	case errors.As(err, &unreach):
		code = exitUnreachable
	}
	if o := root.PersistentFlags().Lookup("output"); o != nil && o.Value.String() == "json" {
		// One machine format: the error as the daemon's API gives it, on
		// stdout, where a script reads the answer; the exit code as ever.
		writeJSONError(os.Stdout, err, code)
		return code
	}
	fmt.Fprintln(os.Stderr, "resilientctl:", err)
	return code
}

// writeJSONError writes {"error": {"code", "message"}}: the daemon's own
// error when it answered one, else a code for the exit's reason.
func writeJSONError(w io.Writer, err error, exit int) {
	e := &api.Error{Message: err.Error()}
	var ae *api.Error
	switch {
	case errors.As(err, &ae):
		e.Code, e.Message = ae.Code, ae.Message
	case exit == exitUsage:
		e.Code = "usage"
	case exit == exitUnreachable:
		e.Code = "unreachable"
	default:
		e.Code = "failed"
	}
	json.NewEncoder(w).Encode(map[string]*api.Error{"error": e})
}
