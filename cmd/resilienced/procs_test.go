package main

import "testing"

func TestDaemonProcs(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	for _, tc := range []struct {
		flag, runtime, want int
		why                 string
	}{
		{0, 2, 2, "the CPUs allowed"},
		{0, 64, 64, "the CPUs allowed"},
		{1, 2, 1, "--procs"},
		{4, 2, 4, "--procs"},
	} {
		got, why, err := daemonProcs(tc.flag, tc.runtime)
		if err != nil || got != tc.want || why != tc.why {
			t.Errorf("daemonProcs(%d, %d) = %d, %q, %v; want %d, %q", tc.flag, tc.runtime, got, why, err, tc.want, tc.why)
		}
	}
	t.Setenv("GOMAXPROCS", "3")
	if got, why, _ := daemonProcs(0, 3); got != 3 || why != "GOMAXPROCS" {
		t.Errorf("with GOMAXPROCS=3: %d, %q", got, why)
	}
	if _, _, err := daemonProcs(-1, 2); err == nil {
		t.Error("daemonProcs(-1) gave no error")
	}
}
