package fault

import "testing"

func TestClassAccounting(t *testing.T) {
	for _, tc := range []struct {
		c                 Class
		charged, replaces bool
	}{
		{Start, true, true},
		{Runtime, false, true},
		{Caller, false, false},
		{Dependency, false, false},
		{"", false, false},
	} {
		if got := tc.c.Charged(); got != tc.charged {
			t.Errorf("%q.Charged() = %v, want %v", tc.c, got, tc.charged)
		}
		if got := tc.c.Replaces(); got != tc.replaces {
			t.Errorf("%q.Replaces() = %v, want %v", tc.c, got, tc.replaces)
		}
	}
}
