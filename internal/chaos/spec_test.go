package chaos

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseKinds(t *testing.T) {
	ks, err := ParseKinds("kill, hang,corrupt-token")
	if err != nil || len(ks) != 3 || ks[2] != CorruptToken {
		t.Fatalf("ParseKinds = %v, %v", ks, err)
	}
	all, err := ParseKinds("all")
	if err != nil || len(all) != len(Kinds) {
		t.Fatalf("all = %v, %v", all, err)
	}
	for in, want := range map[string]string{
		"kil":           `did you mean "kill"`,
		"corrupt_token": `did you mean "corrupt-token"`,
		"explode":       "unknown fault kind",
		"kill,kill":     "given twice",
		"":              "no fault kind",
	} {
		_, err := ParseKinds(in)
		if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseKinds(%q) = %v, want %q", in, err, want)
		}
	}
}

func TestNormalize(t *testing.T) {
	zero := Rate(0)
	neg := Rate(-1)
	for name, c := range map[string]struct {
		s    Spec
		want string
	}{
		"no faults":       {Spec{Target: "p"}, "no fault kind"},
		"no target":       {Spec{Faults: []Kind{Kill}}, "no target"},
		"rate zero":       {Spec{Faults: []Kind{Kill}, Target: "p", Rate: &zero}, "rate of zero"},
		"negative load":   {Spec{Faults: []Kind{Kill}, Target: "p", Load: &neg}, "cannot be negative"},
		"share":           {Spec{Faults: []Kind{Kill}, Target: "p", Share: 1.5}, "share"},
		"jitter":          {Spec{Faults: []Kind{Latency}, Target: "p", Latency: Duration(time.Millisecond), Jitter: Duration(time.Second)}, "jitter"},
		"hallucinate":     {Spec{Faults: []Kind{Hallucinate}, Target: "p", HallucinateKind: "lies"}, "hallucinate_kind"},
		"unknown and dup": {Spec{Faults: []Kind{"x", Kill, Kill}, Target: "p"}, "given twice"},
	} {
		err := c.s.Normalize()
		if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
	s := Spec{Faults: []Kind{Kill}, Target: "p"}
	if err := s.Normalize(); err != nil {
		t.Fatal(err)
	}
	if float64(*s.Load) != DefaultLoad || s.Timeout != Duration(DefaultTimeout) || s.Gate != Duration(DefaultGate) ||
		s.Latency != Duration(DefaultLatency) || s.HallucinateRate != 1 || s.AbortAfterFailures != DefaultAbortFailures {
		t.Errorf("defaults not applied: %+v", s)
	}
	if s.Count != 0 || s.MaxConcurrent != 0 {
		t.Errorf("count and max_concurrent are decided with the target, got %d, %d", s.Count, s.MaxConcurrent)
	}
}

func TestParseSpecYAML(t *testing.T) {
	s, err := ParseSpec("x.yaml", []byte(`
target: demo
faults: [kill, leak]
count: 3
rate: 30/m
max_concurrent: 2
seed: 42
load: 0
latency: 100ms
leak_rate: 16MiB/s
gate: 250ms
`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Target != "demo" || len(s.Faults) != 2 || s.Count != 3 || float64(*s.Rate) != 0.5 || s.MaxConcurrent != 2 ||
		s.Seed != 42 || *s.Load != 0 || s.Latency != Duration(100*time.Millisecond) || s.LeakRate != 16<<20 || s.Gate != Duration(250*time.Millisecond) {
		t.Errorf("parsed %+v", s)
	}
	if _, err := ParseSpec("x.yaml", []byte("target: demo\nfautls: [kill]\n")); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "fautls") {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := ParseSpec("x.yaml", []byte("rate: fast\n")); err == nil {
		t.Error("a rate that is not one was accepted")
	}
	// The wire form round-trips.
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Spec
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if back.Command() != s.Command() {
		t.Errorf("round trip: %s != %s", back.Command(), s.Command())
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]float64{"2": 2, "2/s": 2, "30/m": 0.5, "3600/h": 1, " 0.5/s ": 0.5} {
		r, err := ParseRate(in)
		if err != nil || float64(r) != want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", in, r, err, want)
		}
	}
	for _, in := range []string{"", "x", "2/d", "NaN"} {
		if _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
}

func TestSummarize(t *testing.T) {
	if Summarize(nil) != nil {
		t.Error("a summary of nothing claims something")
	}
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(100 - i) // 100 .. 1
	}
	s := Summarize(xs)
	if s.N != 100 || s.P50 != 50 || s.P99 != 99 || s.Max != 100 {
		t.Errorf("summary %+v", s)
	}
	if s := Summarize([]float64{7}); s.P50 != 7 || s.P99 != 7 || s.Max != 7 {
		t.Errorf("one sample %+v", s)
	}
}

// sampleReport is a report with one kind of each outcome.
func sampleReport() *Report {
	f := func(v float64) *float64 { return &v }
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	r := &Report{Seed: 9, Target: "demo", Pool: "demo", Started: at, Ended: at.Add(time.Minute),
		Spec: Spec{Faults: []Kind{Kill, Hang, Sever}, Target: "demo", Seed: 9}}
	for i := range 10 {
		r.Injections = append(r.Injections, &Injection{Kind: Kill, Agent: "demo-1", At: at, DetectMS: f(1 + float64(i)), RecoverMS: f(3 + float64(i)), Recovered: true, Cause: "exit", How: "replaced"})
	}
	r.Injections = append(r.Injections,
		&Injection{Kind: Hang, Agent: "demo-2", At: at, DetectMS: f(120), RecoverMS: f(450), Recovered: true, Cause: "hang", How: "replaced"},
		&Injection{Kind: Hang, Agent: "demo-3", At: at, Reason: "the supervisor did not notice within 5s <script>"},
	)
	r.Calls = Calls{Total: 1000, OK: 999, Failed: 1, Retried: 12, Errors: []string{"boom"}}
	r.Replay = r.Spec.Command()
	r.build(r.Spec.Faults, map[Kind]string{Sever: "no BPF & no root"}, 300*time.Millisecond)
	return r
}

func TestGate(t *testing.T) {
	r := sampleReport()
	if r.Gate.Passed {
		t.Fatal("a report with a slow, an unrecovered and an unsupported kind passed")
	}
	got := strings.Join(r.Gate.Failures, "\n")
	for _, want := range []string{"hang: 1 of 2 faults did not recover", "hang: p99 recovery 450 ms exceeds 300 ms", "sever: not supported here", "1 of 1000 calls failed"} {
		if !strings.Contains(got, want) {
			t.Errorf("gate failures lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "kill") {
		t.Errorf("kill recovered in time but fails the gate:\n%s", got)
	}
	// The same measurements against an impossible bound: even kill fails.
	if g := r.Evaluate(time.Nanosecond); g.Passed || !strings.Contains(strings.Join(g.Failures, "\n"), "kill: p99 recovery") {
		t.Errorf("impossible bound: %+v", g)
	}
	// A clean report passes.
	ok := &Report{Spec: Spec{Faults: []Kind{Kill}}}
	ok.Injections = r.Injections[:10]
	ok.Calls = Calls{Total: 10, OK: 10}
	ok.build([]Kind{Kill}, nil, 300*time.Millisecond)
	if !ok.Gate.Passed {
		t.Errorf("clean report fails: %v", ok.Gate.Failures)
	}
	kr := ok.Faults[0]
	if kr.Injected != 10 || kr.Recovered != 10 || kr.RecoverMS.P50 != 7 || kr.RecoverMS.P99 != 12 || kr.DetectMS.Max != 10 || kr.Causes["exit"] != 10 {
		t.Errorf("kind report %+v %+v %+v", kr, kr.RecoverMS, kr.DetectMS)
	}
	// Aborted experiments never pass.
	ok.Aborted = "interrupted"
	if ok.Evaluate(time.Hour).Passed {
		t.Error("an aborted experiment passed")
	}
}

func TestReportJSONShape(t *testing.T) {
	b, err := json.Marshal(sampleReport())
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	json.Unmarshal(b, &raw)
	for _, k := range []string{"seed", "faults", "calls"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	f := raw["faults"].([]any)[0].(map[string]any)
	for _, k := range []string{"kind", "injected", "recovered", "detect_ms", "recover_ms"} {
		if _, ok := f[k]; !ok {
			t.Errorf("faults[0] lacks %q", k)
		}
	}
	for _, k := range []string{"p50", "p99", "max"} {
		if _, ok := f["recover_ms"].(map[string]any)[k]; !ok {
			t.Errorf("recover_ms lacks %q", k)
		}
	}
	c := raw["calls"].(map[string]any)
	for _, k := range []string{"total", "ok", "failed", "retried"} {
		if _, ok := c[k]; !ok {
			t.Errorf("calls lacks %q", k)
		}
	}
	// Unmeasured is absent (null), never zero.
	sever := raw["faults"].([]any)[2].(map[string]any)
	if sever["recover_ms"] != nil || sever["detect_ms"] != nil {
		t.Errorf("sever was not measured but reports %v / %v", sever["detect_ms"], sever["recover_ms"])
	}
}

func TestWriteHTML(t *testing.T) {
	var b strings.Builder
	if err := WriteHTML(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{"<svg", "gate 300 ms", "FAIL", "not supported here: no BPF &amp; no root", "resilientctl chaos run --fault kill,hang,sever", "&lt;script&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Self-contained and inert: no script, nothing fetched (the only URL is
	// the SVG namespace).
	if strings.Contains(page, "<script") || strings.Count(page, "http://") != 1 || strings.Contains(page, "https://") {
		t.Error("the page has a script or a link to fetch")
	}
	if n := strings.Count(page, "<circle"); n < 12 {
		t.Errorf("%d dots; want one per measured fault and the legend", n)
	}
}

func TestWriteText(t *testing.T) {
	var b strings.Builder
	sampleReport().WriteText(&b)
	out := b.String()
	for _, want := range []string{"KIND", "kill", "FAIL: not supported here", "calls: 1000 total, 999 ok", "gate: FAIL"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
}

func TestJWT(t *testing.T) {
	key := []byte(DemoJWTKey)
	if !VerifyJWT(key, DemoToken) {
		t.Fatal("the demo token does not verify")
	}
	bad := []byte(DemoToken)
	bad[len(bad)-2] ^= 1
	if VerifyJWT(key, string(bad)) || VerifyJWT([]byte("other"), DemoToken) || VerifyJWT(key, "a.b") {
		t.Error("a bad token verified")
	}
	var in map[string]any
	if err := json.Unmarshal(CallInput(3), &in); err != nil || in["token"] != DemoToken || in["n"] != 3.0 {
		t.Errorf("CallInput = %s (%v)", CallInput(3), err)
	}
}
