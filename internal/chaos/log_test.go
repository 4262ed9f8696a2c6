package chaos

import (
	"io"
	"log/slog"
	"os"
)

func quietLogger() *slog.Logger {
	if os.Getenv("CHAOS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
