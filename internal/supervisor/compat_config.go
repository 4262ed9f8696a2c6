package supervisor

import (
	"time"

	"github.com/resilienced/resilienced/internal/config"
)

// minUptime is the pool's min_uptime (until the config key lands).
func minUptime(config.Pool) time.Duration { return time.Second }
