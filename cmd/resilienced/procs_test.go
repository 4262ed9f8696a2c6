package main

import "testing"

func TestDaemonProcs(t *testing.T) {
	for _, tc := range []struct {
		flag    int
		env     string
		runtime int
		want    int
		why     string
	}{
		{0, "", 1, 1, "half the CPUs"},
		{0, "", 2, 1, "half the CPUs"},
		{0, "", 3, 2, "half the CPUs"},
		{0, "", 64, 32, "half the CPUs"},
		{0, "6", 6, 6, "GOMAXPROCS"},
		{3, "6", 6, 3, "--procs"},
		{4, "", 2, 4, "--procs"},
	} {
		got, why, err := daemonProcs(tc.flag, tc.env, tc.runtime)
		if err != nil || got != tc.want || why != tc.why {
			t.Errorf("daemonProcs(%d, %q, %d) = %d, %q, %v; want %d, %q", tc.flag, tc.env, tc.runtime, got, why, err, tc.want, tc.why)
		}
	}
	if _, _, err := daemonProcs(-1, "", 2); err == nil {
		t.Error("daemonProcs(-1) gave no error")
	}
}
