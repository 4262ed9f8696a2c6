package agentscope

import "testing"

func TestServiceOf(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0::/system.slice/resilienced.service\n", "resilienced.service"},
		{"0::/system.slice/resilienced.service/daemon\n", "resilienced.service"},
		{"0::/system.slice/other.service/agents/p/a\n", "other.service"},
		{"0::/user.slice/user-0.slice/session-1.scope\n", ""},
		{"0::/\n", ""},
		// Hybrid: v1 hierarchies listed too; the scope is for pure v2 only.
		{"12:memory:/system.slice/resilienced.service\n0::/system.slice/resilienced.service\n", ""},
	} {
		if got := serviceOf(tc.in); got != tc.want {
			t.Errorf("serviceOf(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := UnitFor("resilienced.service"); got != "resilienced-agents.scope" {
		t.Errorf("UnitFor = %q", got)
	}
}
