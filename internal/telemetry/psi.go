package telemetry

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// PSI is pressure stall information: the share of time tasks were stalled
// waiting for CPU, memory or IO.
type PSI struct {
	// Scope is "cgroup" when read from the cgroup's own *.pressure files and
	// "system" when read from /proc/pressure.
	Scope           string
	CPU, Memory, IO Pressure
}

// Pressure is one resource's PSI. Some counts time when at least one task
// was stalled, Full time when all non-idle tasks were.
type Pressure struct {
	Some, Full PressureLine
}

// PressureLine holds the stalled percentage of wall time averaged over 10,
// 60 and 300 seconds, and the total stall time.
type PressureLine struct {
	Avg10, Avg60, Avg300 float64
	Total                time.Duration
}

// parsePressure parses a PSI file:
//
//	some avg10=0.00 avg60=0.00 avg300=0.00 total=0
//	full avg10=0.00 avg60=0.00 avg300=0.00 total=0
//
// The full line is absent for CPU on older kernels.
func parsePressure(b []byte) (Pressure, error) {
	var (
		p    Pressure
		some bool
	)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		kind, rest, _ := strings.Cut(sc.Text(), " ")
		var line *PressureLine
		switch kind {
		case "some":
			line, some = &p.Some, true
		case "full":
			line = &p.Full
		case "":
			continue
		default:
			return Pressure{}, fmt.Errorf("psi: unknown line %q", kind)
		}
		for _, field := range strings.Fields(rest) {
			k, v, ok := strings.Cut(field, "=")
			if !ok {
				return Pressure{}, fmt.Errorf("psi: bad field %q", field)
			}
			var err error
			switch k {
			case "avg10":
				line.Avg10, err = parseAvg(v)
			case "avg60":
				line.Avg60, err = parseAvg(v)
			case "avg300":
				line.Avg300, err = parseAvg(v)
			case "total":
				var us uint64
				us, err = strconv.ParseUint(v, 10, 64)
				line.Total = time.Duration(min(us, uint64(1<<63-1)/1000)) * time.Microsecond
			}
			if err != nil {
				return Pressure{}, fmt.Errorf("psi: %s: %w", k, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return Pressure{}, fmt.Errorf("psi: %w", err)
	}
	if !some {
		return Pressure{}, fmt.Errorf("psi: no \"some\" line")
	}
	return p, nil
}

func parseAvg(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	if f < 0 || f > 100 || f != f {
		return 0, fmt.Errorf("%q out of range", s)
	}
	return f, nil
}
