package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/mcptest"
)

// rssBytes is a process's resident set size.
func rssBytes(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

func goClient(t *testing.T, url, version string) *sdk.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "e2e", Version: "1"}, nil).Connect(ctx,
		&sdk.StreamableClientTransport{Endpoint: url}, &sdk.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect %s in %q: %v", url, version, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// hostileRSSBound is how much the daemon's RSS may grow under the hostile
// requests: 8 at a time, each body bounded by the front door's 4 MiB and
// held once while it is read (32 MiB), doubled by the Go collector's
// default headroom (GOGC=100): 64 MiB, and 32 MiB more for the goroutines,
// buffers and sessions of the run.
const hostileRSSBound = 96 << 20

// TestMCPFrontDoorHostile sends 1,000 malformed or hostile requests (every
// class of mcptest.HostileRequests) to a real daemon's front door over a
// pool of real agents: each gets the status and JSON-RPC code the spec
// gives it, no agent is killed or replaced, the daemon's RSS stays within
// hostileRSSBound, and a real client is served after.
func TestMCPFrontDoorHostile(t *testing.T) {
	bin := binaries(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := writeConfig(t, dir, fmt.Sprintf("mcp: {listen: %q}\npools:", addr)+poolYAML(bin, "echo"))
	d := startDaemon(t, cfg, filepath.Join(dir, "state"))
	url := "http://" + addr + "/mcp"
	ctx := context.Background()

	before, err := d.client.Agents(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	live := goClient(t, url, "2025-11-25")
	if res, err := live.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"q": 0}}); err != nil || res.IsError {
		t.Fatalf("first call: %+v %v\n%s", res, err, d.log)
	}
	rss0 := rssBytes(t, d.cmd.Process.Pid)
	start := time.Now()

	reqs := mcptest.HostileRequests(1000, mcptest.HostileOptions{Session: live.ID(), Tool: "echo", MaxBodyBytes: 4 << 20})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	failures := map[string]int{}
	classes := map[string]int{}
	next := make(chan mcptest.Hostile)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h := range next {
				err := h.Send(ctx, client, url)
				mu.Lock()
				classes[h.Class]++
				if err != nil {
					failures[err.Error()]++
				}
				mu.Unlock()
			}
		}()
	}
	for _, h := range reqs {
		next <- h
	}
	close(next)
	wg.Wait()
	rss1 := rssBytes(t, d.cmd.Process.Pid)
	for e, n := range failures {
		t.Errorf("%d× %s", n, e)
	}
	t.Logf("%d hostile requests of %d classes in %v; daemon RSS %.1f MiB before, %.1f MiB after (bound: +%d MiB)",
		len(reqs), len(classes), time.Since(start).Round(time.Millisecond), float64(rss0)/(1<<20), float64(rss1)/(1<<20), hostileRSSBound>>20)
	if rss1-rss0 > hostileRSSBound {
		t.Errorf("the daemon's RSS grew by %.1f MiB, bound %d MiB", float64(rss1-rss0)/(1<<20), hostileRSSBound>>20)
	}

	// 0 agents killed: the same agents, and no failure event.
	after, err := d.client.Agents(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	ids := func(as []api.AgentStatus) []string {
		var s []string
		for _, a := range as {
			s = append(s, fmt.Sprint(a.ID, "/", a.PID))
		}
		slices.Sort(s)
		return s
	}
	if !slices.Equal(ids(before), ids(after)) {
		t.Errorf("agents changed: %v before, %v after", ids(before), ids(after))
	}
	evctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d.client.Events(evctx, api.EventQuery{}, func(ev api.Event) error {
		switch ev.Kind {
		case "exit", "kill", "violation", "deadline", "hang", "oom", "restart", "recovered":
			t.Errorf("event %s of agent %s: %s", ev.Kind, ev.Agent, ev.Reason)
		}
		return nil
	})
	if res, err := live.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"q": 1}}); err != nil || res.IsError {
		t.Fatalf("after the hostile requests: %+v %v", res, err)
	}
}

// TestMCPFrontDoorEras: the Go SDK's client lists and calls a real pool
// in each revision it speaks (the stateless 2026-07-28 one, where it
// starts with server/discover and has no session, and the session era's
// 2025-11-25 and 2025-06-18), and a client that drops its session id is
// still answered. Every operation shows on the Prometheus endpoint under
// the OpenTelemetry MCP conventions' names, and a call's traceparent from
// params._meta marks the daemon's log lines of it, its retries included.
// (The TypeScript SDK 1.32.2 speaks only the session era, up to
// 2025-11-25: TestMCPFrontDoorWithOfficialClient.)
func TestMCPFrontDoorEras(t *testing.T) {
	bin := binaries(t)
	dir := t.TempDir()
	addr, metrics := freeAddr(t), freeAddr(t)
	// shaky breaks its contract on half its calls: they are retried.
	shaky := strings.Replace(strings.Replace(poolYAML(bin, "shaky"), `-seed, "1"]`, `-seed, "1", -hallucinate, "0.5"]`, 1), "spares: 1", "spares: 1\n    retries: 8", 1)
	cfg := writeConfig(t, dir, fmt.Sprintf("metrics_addr: %q\nmcp: {listen: %q}\npools:", metrics, addr)+poolYAML(bin, "echo")+shaky)
	d := startDaemon(t, cfg, filepath.Join(dir, "state"), "--log-level", "debug")
	url := "http://" + addr + "/mcp"
	ctx := context.Background()

	for _, version := range []string{"2026-07-28", "2025-11-25", "2025-06-18"} {
		cs := goClient(t, url, version)
		if got := cs.InitializeResult().ProtocolVersion; got != version {
			t.Errorf("asked for %s, negotiated %s", version, got)
		}
		if (cs.ID() == "") != (version == "2026-07-28") {
			t.Errorf("%s: session id %q", version, cs.ID())
		}
		tools, err := cs.ListTools(ctx, nil)
		if err != nil || len(tools.Tools) != 2 {
			t.Fatalf("%s: tools %+v %v", version, tools, err)
		}
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"era": version}})
		if err != nil || res.IsError || !strings.Contains(res.Content[0].(*sdk.TextContent).Text, version) {
			t.Errorf("%s: call %+v %v", version, res, err)
		}
	}

	// A client that keeps no session id: a bare POST is answered.
	body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"dropped":"session"}}}`
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `\"dropped\":\"session\"`) || strings.Contains(string(b), `"error"`) {
		t.Errorf("a POST without its session id: %d %s", resp.StatusCode, b)
	}

	// Traced calls: the front door's line of each, and the daemon's line
	// of each retried one, carry the call's trace.
	cs := goClient(t, url, "2025-11-25")
	traces := map[string]bool{}
	for i := range 12 {
		trace := fmt.Sprintf("%032x", 0xabc000+i)
		traces[trace] = true
		tp := "00-" + trace + "-00f067aa0ba902b7-01"
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Meta: sdk.Meta{"traceparent": tp}, Name: "shaky", Arguments: map[string]any{"i": i}})
		if err != nil || res.IsError {
			t.Errorf("shaky call %d: %+v %v", i, res, err)
		}
	}
	cs.CallTool(ctx, &sdk.CallToolParams{Name: "no-such-tool", Arguments: map[string]any{}})
	// The Prometheus endpoint.
	resp, err = http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	exposition := string(b)
	for _, want := range []string{
		`mcp_server_operation_duration_seconds_bucket{error_type="",gen_ai_tool_name="",mcp_method_name="server/discover",mcp_protocol_version="2026-07-28",le="0.01"}`,
		`mcp_server_operation_duration_seconds_count{error_type="",gen_ai_tool_name="echo",mcp_method_name="tools/call",mcp_protocol_version="2026-07-28"} 1`,
		`mcp_server_operation_duration_seconds_count{error_type="",gen_ai_tool_name="echo",mcp_method_name="tools/call",mcp_protocol_version="2025-06-18"} 2`,
		`mcp_server_operation_duration_seconds_count{error_type="",gen_ai_tool_name="shaky",mcp_method_name="tools/call",mcp_protocol_version="2025-11-25"} 12`,
		`mcp_server_operation_duration_seconds_count{error_type="-32602",gen_ai_tool_name="_OTHER",mcp_method_name="tools/call",mcp_protocol_version="2025-11-25"} 1`,
		`mcp_server_operation_duration_seconds_count{error_type="",gen_ai_tool_name="",mcp_method_name="initialize",mcp_protocol_version="2025-11-25"} 2`,
		`mcp_server_operation_duration_seconds_bucket{error_type="",gen_ai_tool_name="",mcp_method_name="tools/list",mcp_protocol_version="2025-06-18",le="300"} 1`,
		`resilienced_mcp_sessions 3`,
	} {
		if !strings.Contains(exposition, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The daemon's log, read once it has stopped writing it.
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	var frontLines, retried int
	traceRe := regexp.MustCompile(`trace_id=([0-9a-f]{32})`)
	for _, l := range strings.Split(d.log.String(), "\n") {
		front := strings.Contains(l, `msg="mcp request"`) && strings.Contains(l, "tool=shaky")
		retry := strings.Contains(l, `msg="MCP call retried"`)
		if !front && !retry {
			continue
		}
		m := traceRe.FindStringSubmatch(l)
		if m == nil || !traces[m[1]] || !strings.Contains(l, "span_id=00f067aa0ba902b7") {
			t.Errorf("a line of a traced call without its trace: %s", l)
		}
		if front {
			frontLines++
		} else {
			retried++
		}
	}
	if frontLines != 12 || retried == 0 {
		t.Errorf("%d front-door lines (want 12), %d retried-call lines (want some) of the traced calls\n%s", frontLines, retried, d.log)
	}
	t.Logf("12 traced calls, %d of them retried; each line carries its trace_id", retried)

	if t.Failed() {
		for _, l := range strings.Split(exposition, "\n") {
			if strings.HasPrefix(l, "mcp_") && strings.Contains(l, "_count") || strings.HasPrefix(l, "resilienced_mcp") {
				t.Log(l)
			}
		}
	}
}
