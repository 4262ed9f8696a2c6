package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/resilienced/resilienced/internal/api"
)

// The dashboard and the alerting rules shipped in packaging/.
const (
	dashboardPath = "../../packaging/grafana/resilienced.json"
	rulesPath     = "../../packaging/prometheus/rules.yml"
)

// TestGrafanaDashboardAgainstPrometheus runs a real Prometheus (Debian's
// `prometheus` package; the test installs nothing and skips without it)
// scraping a real daemon under load, with packaging/prometheus/rules.yml
// loaded. Every query of every panel of packaging/grafana/resilienced.json
// must name only metrics the daemon exports and, evaluated through
// Prometheus' HTTP API, return data; every alerting rule must evaluate
// without error, and the two the load provokes (a pool that gave up, an
// open breaker) must fire or be pending.
func TestGrafanaDashboardAgainstPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs a daemon and Prometheus for a minute or more")
	}
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed (apt-get install prometheus): the dashboard is checked against a real one")
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (it comes with Debian's prometheus package)")
	}
	rules, err := filepath.Abs(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", rulesPath, err, out)
	}
	queries := dashboardQueries(t, dashboardPath)
	if len(queries) < 20 {
		t.Fatalf("%d queries in the dashboard: it lost its panels", len(queries))
	}

	bin := binaries(t)
	dir := t.TempDir()
	metricsAddr := freeAddr(t)
	flaky := filepath.Join(bin, "flaky")
	pools := fmt.Sprintf(`
  - name: echo          # 5 %% hallucination: violations, recoveries, retried calls
    command: [%[1]s, -seed, "1", -latency, 5ms, -hallucinate, "0.05"]
    replicas: 2
    spares: 1
    contract: {schema: {type: object, required: [answer]}, deadline: 5s}
  - name: broken        # every answer breaks the contract: calls fail, the breaker opens
    command: [%[1]s, -seed, "2", -hallucinate, "1"]
    replicas: 1
    spares: 0
    retries: 1
    breaker: {window: 10s, min_calls: 5, failure_ratio: 0.5, open_for: 2s, max_open_for: 4s}
    contract: {schema: {type: object, required: [answer], properties: {answer: {type: string}}}, deadline: 5s}
`, flaky)
	configBody := fmt.Sprintf("metrics_addr: %s\npools:%s", metricsAddr, pools)
	cfg := writeConfig(t, dir, configBody)
	d := startDaemon(t, cfg, filepath.Join(dir, "state"))

	ctx, cancel := context.WithCancel(context.Background())
	loadDone := make(chan struct{})
	callers := []string{"echo", "echo", "broken"}
	for _, pool := range callers {
		go func() {
			defer func() { loadDone <- struct{}{} }()
			for ctx.Err() == nil {
				cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := d.client.Call(cctx, pool, api.CallRequest{Input: json.RawMessage(`{"q":"hi"}`)})
				ccancel()
				if err != nil {
					time.Sleep(50 * time.Millisecond) // a failing pool answers at once
				}
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		for range callers {
			<-loadDone
		}
	})

	// A pool whose agents cannot start gives up: added once the daemon runs,
	// since the daemon waits at start for its pools to be ready.
	configBody += fmt.Sprintf(`
  - name: dead          # exits before its handshake: start failures, then the pool gives up
    command: [%s, -fail-init]
    replicas: 1
    backoff: {initial: 10ms, max: 50ms}
    intensity: {max_restarts: 2, period: 10s}
`, flaky)
	writeConfig(t, dir, configBody)
	if _, err := d.client.Reload(context.Background()); err != nil {
		t.Fatalf("reload adding the dead pool: %v", err)
	}

	promURL := "http://" + startPrometheus(t, prom, dir, metricsAddr, rules)

	// Poll until every query has data (the counters of failures appear
	// with the first failure, the rates need two scrapes), then report
	// what still has none.
	deadline := time.Now().Add(3 * time.Minute)
	var problems []string
	for {
		exported, err := exportedMetrics("http://" + metricsAddr + "/metrics")
		if err != nil {
			t.Fatalf("scraping the daemon: %v", err)
		}
		problems = problems[:0]
		for _, q := range queries {
			if err := checkQuery(promURL, exported, q.expr); err != nil {
				problems = append(problems, fmt.Sprintf("panel %q: %v\n    %s", q.panel, err, q.expr))
			}
		}
		if err := alertsProvoked(promURL); err != nil {
			problems = append(problems, err.Error())
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	for _, p := range problems {
		t.Error(p)
	}
	if t.Failed() {
		t.Logf("daemon log tail:\n%s", tail(d.log.String(), 30))
		return
	}

	// The check fails a dashboard that names a metric the daemon does not
	// export, even in a query that would still return data.
	exported, err := exportedMetrics("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`sum by (pool) (rate(resilienced_call_total[30s]))`,
		`sum by (pool) (rate(resilienced_calls_total[30s])) or sum by (pool) (resilienced_arbiter_risk{pool="echo"})`,
	} {
		if err := checkQuery(promURL, exported, bad); err == nil {
			t.Errorf("a query naming a metric the daemon does not export passed: %s", bad)
		}
	}
}

type panelQuery struct{ panel, expr string }

// dashboardQueries returns every target's expression of every panel, rows
// included, with Grafana's variables replaced as a dashboard showing all
// pools, instances and jobs would.
func dashboardQueries(t *testing.T, path string) []panelQuery {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	vars := strings.NewReplacer(`$pool`, `.+`, `$instance`, `.+`, `$job`, `.+`, `$__rate_interval`, `30s`)
	var out []panelQuery
	var walk func([]json.RawMessage)
	walk = func(ps []json.RawMessage) {
		for _, raw := range ps {
			var p panel
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q has an empty query", p.Title)
					continue
				}
				out = append(out, panelQuery{p.Title, vars.Replace(tg.Expr)})
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	return out
}

// selectorName finds the metric names in a query: every identifier
// directly followed by a label matcher. The dashboard writes every
// selector with one.
var selectorName = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{`)

// checkQuery fails a query that names a metric the daemon does not export
// or that returns no finite value from Prometheus.
func checkQuery(promURL string, exported map[string]bool, expr string) error {
	names := selectorName.FindAllStringSubmatch(expr, -1)
	if len(names) == 0 {
		return fmt.Errorf("names no metric")
	}
	for _, m := range names {
		if !exported[m[1]] {
			return fmt.Errorf("names %s, which the daemon does not export", m[1])
		}
	}
	vals, err := promQuery(promURL, expr)
	if err != nil {
		return err
	}
	for _, v := range vals {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			return nil
		}
	}
	if len(vals) == 0 {
		return fmt.Errorf("no data")
	}
	return fmt.Errorf("no finite value in %d series", len(vals))
}

// promQuery evaluates an instant query through Prometheus' HTTP API and
// returns the values of the resulting vector.
func promQuery(promURL, expr string) ([]float64, error) {
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := getJSON(promURL+"/api/v1/query?query="+url.QueryEscape(expr), &resp); err != nil {
		return nil, err
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("prometheus: %s", resp.Error)
	}
	if resp.Data.ResultType != "vector" {
		return nil, fmt.Errorf("result type %s, want vector", resp.Data.ResultType)
	}
	var out []float64
	for _, r := range resp.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("value %q: %v", s, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// alertsProvoked checks that every rule evaluates without error and that
// the failed pool's and the open breaker's alerts are firing or pending.
func alertsProvoked(promURL string) error {
	var resp struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Type      string `json:"type"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
					State     string `json:"state"`
					Alerts    []struct {
						Labels map[string]string `json:"labels"`
						State  string            `json:"state"`
					} `json:"alerts"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := getJSON(promURL+"/api/v1/rules", &resp); err != nil {
		return err
	}
	var names []string
	want := map[string]string{"ResiliencedPoolFailed": "dead", "ResiliencedBreakerOpen": "broken"}
	var errs []string
	for _, g := range resp.Data.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Name)
			if r.Health != "ok" {
				errs = append(errs, fmt.Sprintf("rule %s: health %q %s", r.Name, r.Health, r.LastError))
			}
			pool, ok := want[r.Name]
			if !ok {
				continue
			}
			delete(want, r.Name)
			if !slices.ContainsFunc(r.Alerts, func(a struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			}) bool {
				return a.Labels["pool"] == pool && (a.State == "firing" || a.State == "pending")
			}) {
				errs = append(errs, fmt.Sprintf("alert %s: not firing or pending for pool %s (%+v)", r.Name, pool, r.Alerts))
			}
		}
	}
	if len(names) < 4 {
		errs = append(errs, fmt.Sprintf("rules loaded: %v", names))
	}
	for name := range want {
		errs = append(errs, "no rule "+name)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

// exportedMetrics returns the names a /metrics exposition has samples
// under: each family's name and, for histograms and summaries, its _bucket,
// _sum and _count series.
func exportedMetrics(u string) (map[string]bool, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			names[f[2]] = true
			if f[3] == "histogram" || f[3] == "summary" {
				names[f[2]+"_bucket"], names[f[2]+"_sum"], names[f[2]+"_count"] = true, true, true
			}
		}
	}
	return names, nil
}

func getJSON(u string, out any) error {
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s: %v: %.200s", u, err, b)
	}
	return nil
}

// startPrometheus runs Prometheus scraping target every second with the
// rules loaded, and returns its address once it is ready.
func startPrometheus(t *testing.T, prom, dir, target, rules string) string {
	t.Helper()
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "prometheus.yml")
	body := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: resilienced
    static_configs: [{targets: [%q]}]
`, rules, target)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &strings.Builder{}
	cmd := exec.Command(prom, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &lockedWriter{b: log}, &lockedWriter{b: log}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		select {
		case <-exited:
			t.Fatalf("prometheus exited:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready on %s after 60 s: %v\n%s", addr, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
