//go:build !linux

package chaos

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"time"

	"github.com/resilienced/resilienced/internal/supervisor"
)

const (
	sigKill = syscall.SIGKILL
	sigSegv = syscall.SIGSEGV
)

var errOS = fmt.Errorf("%w on %s", ErrNotSupported, runtime.GOOS)

func signalProcess(pid int, sig syscall.Signal) error { return errOS }
func stopGroup(pid int) error                         { return errOS }
func continueGroup(pid int) error                     { return errOS }

type helper struct {
	died chan time.Time
}

func startHelper(command []string, sb supervisor.Sandbox, mode string, rate, cap int64) (*helper, error) {
	return nil, errOS
}
func (h *helper) begin() error                   { return errOS }
func (h *helper) exitErr() error                 { return errOS }
func (h *helper) stop(ctx context.Context) error { return nil }
