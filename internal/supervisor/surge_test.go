package supervisor

import "testing"

func TestSparesForPoissonTail(t *testing.T) {
	for _, tc := range []struct {
		mean float64
		want int
	}{
		{0, 0},
		{0.002, 1}, // P(X > 0) = 2e-3: one spare
		{0.1, 2},   // P(X > 2) = 1.5e-4, P(X > 1) = 4.7e-3
		{1, 5},     // P(X > 5) = 6e-4, P(X > 4) = 3.7e-3
		{1.5, 6},   // P(X > 6) = 9.2e-4, P(X > 5) = 4.5e-3
	} {
		if got := sparesFor(tc.mean, 1e-3); got != tc.want {
			t.Errorf("sparesFor(%v) = %d, want %d", tc.mean, got, tc.want)
		}
	}
}
