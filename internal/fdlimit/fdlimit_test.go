package fdlimit

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	// This sandbox's hard limit: 2,000 agents fit at PerAgent each.
	if err := Check(2000, 20000, 100); err != nil {
		t.Errorf("2,000 agents in 20,000 descriptors: %v", err)
	}
	err := Check(4000, 20000, 100)
	if !errors.Is(err, ErrTooManyAgents) {
		t.Fatalf("4,000 agents in 20,000 descriptors: %v, want ErrTooManyAgents", err)
	}
	for _, want := range []string{"4000 agents", "RLIMIT_NOFILE 20000", "allows 3877"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if got := Capacity(100, 50); got != 0 {
		t.Errorf("Capacity below the reserve = %d, want 0", got)
	}
}

func TestRaise(t *testing.T) {
	lim, err := Raise()
	if err != nil {
		t.Skip(err)
	}
	if lim == 0 || Open() <= 0 {
		t.Errorf("Raise = %d, Open = %d", lim, Open())
	}
}
