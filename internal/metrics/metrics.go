package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/resilienced/resilienced/internal/supervisor"
)

// Source is what the gauges are read from at scrape time.
type Source interface {
	Status() []supervisor.PoolStatus
	Agents(pool string) ([]supervisor.AgentStatus, error)
}

// Metrics holds the collectors of one daemon.
type Metrics struct {
	reg        *prometheus.Registry
	restarts   *prometheus.CounterVec
	violations *prometheus.CounterVec
	events     *prometheus.CounterVec
	calls      *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	recovery   *prometheus.HistogramVec
	detection  *prometheus.HistogramVec
	failures   *prometheus.CounterVec

	mcpOperation *prometheus.HistogramVec
	mcpSession   *prometheus.HistogramVec
	mcpSessions  prometheus.Gauge
}

// mcpBuckets are the bucket boundaries the OpenTelemetry MCP semantic
// conventions give the mcp.*.duration histograms, in seconds.
var mcpBuckets = []float64{0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300}

// New registers the collectors; src backs the gauges.
func New(src Source) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.restarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "resilienced_agent_restarts_total", Help: "Agents replaced after a failure, by pool and cause.",
	}, []string{"pool", "cause"})
	m.violations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "resilienced_violations_total", Help: "Contract violations, by pool and code.",
	}, []string{"pool", "code"})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "resilienced_events_total", Help: "Supervision events, by pool and kind.",
	}, []string{"pool", "kind"})
	m.calls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "resilienced_calls_total", Help: "Calls, by pool and outcome (ok, retried, cached, failed, rejected, canceled).",
	}, []string{"pool", "outcome"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "resilienced_call_duration_seconds", Help: "Call latency inside the daemon, retries included.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18), // 50µs … 6.5s
	}, []string{"pool"})
	m.recovery = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "resilienced_recovery_seconds", Help: "From the first evidence of a fault to the pool back at full strength, by fault kind.",
		Buckets: prometheus.ExponentialBuckets(10e-6, 2.5, 14), // 10µs … 1.5s
	}, []string{"pool", "cause"})
	m.detection = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "resilienced_detection_seconds", Help: "From a fault to the supervisor acting on it, by fault kind.",
		Buckets: prometheus.ExponentialBuckets(10e-6, 2.5, 14),
	}, []string{"pool", "cause"})
	m.failures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "resilienced_failures_total", Help: "Agent failures, by pool, fault class (start, runtime, caller, dependency) and event kind.",
	}, []string{"pool", "class", "kind"})
	// The MCP front door's metrics carry the OpenTelemetry MCP semantic
	// conventions' names as an OpenTelemetry Prometheus exporter spells
	// them (dots as underscores, the unit as a suffix), so dashboards made
	// for the conventions read them unchanged.
	m.mcpOperation = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "mcp_server_operation_duration_seconds", Help: "MCP request or notification duration as observed on the receiver from the time it was received until the result or ack is sent (OpenTelemetry mcp.server.operation.duration).",
		Buckets: mcpBuckets,
	}, []string{"mcp_method_name", "gen_ai_tool_name", "error_type", "mcp_protocol_version"})
	m.mcpSession = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "mcp_server_session_duration_seconds", Help: "The duration of the MCP session as observed on the MCP server (OpenTelemetry mcp.server.session.duration).",
		Buckets: mcpBuckets,
	}, []string{"mcp_protocol_version"})
	m.mcpSessions = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "resilienced_mcp_sessions", Help: "MCP sessions open on the front door (the conventions define no such gauge).",
	})
	m.reg.MustRegister(m.restarts, m.violations, m.events, m.calls, m.latency, m.recovery, m.detection, m.failures,
		m.mcpOperation, m.mcpSession, m.mcpSessions,
		&gauges{src: src},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Event feeds one supervisor event.
func (m *Metrics) Event(ev supervisor.Event) {
	m.events.WithLabelValues(ev.Pool, string(ev.Kind)).Inc()
	if ev.Class != "" {
		m.failures.WithLabelValues(ev.Pool, string(ev.Class), string(ev.Kind)).Inc()
	}
	switch ev.Kind {
	case supervisor.EventViolation, supervisor.EventDeadline, supervisor.EventHang:
		if ev.Code != "" {
			m.violations.WithLabelValues(ev.Pool, ev.Code).Inc()
		}
	case supervisor.EventRecovered:
		m.restarts.WithLabelValues(ev.Pool, string(ev.Cause)).Inc()
		if ev.RecoverMS != nil {
			m.recovery.WithLabelValues(ev.Pool, string(ev.Cause)).Observe(*ev.RecoverMS / 1000)
		}
		if ev.DetectMS != nil {
			m.detection.WithLabelValues(ev.Pool, string(ev.Cause)).Observe(*ev.DetectMS / 1000)
		}
	}
}

// Call feeds one call's outcome.
func (m *Metrics) Call(pool, outcome string, d time.Duration) {
	m.calls.WithLabelValues(pool, outcome).Inc()
	if outcome == supervisor.OutcomeOK || outcome == supervisor.OutcomeRetried {
		m.latency.WithLabelValues(pool).Observe(d.Seconds())
	}
}

// MCPOperation feeds one operation of the MCP front door; labels left
// empty are the attributes the conventions leave out in that case.
func (m *Metrics) MCPOperation(method, tool, errorType, protocolVersion string, d time.Duration) {
	m.mcpOperation.WithLabelValues(method, tool, errorType, protocolVersion).Observe(d.Seconds())
}

// MCPSessionOpened counts an MCP session opened.
func (m *Metrics) MCPSessionOpened() { m.mcpSessions.Inc() }

// MCPSessionClosed records an MCP session's end.
func (m *Metrics) MCPSessionClosed(protocolVersion string, d time.Duration) {
	m.mcpSessions.Dec()
	m.mcpSession.WithLabelValues(protocolVersion).Observe(d.Seconds())
}

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Serve serves /metrics on addr until ctx ends.
func (m *Metrics) Serve(ctx context.Context, addr string, log *slog.Logger) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	log.Info("metrics listening", "addr", l.Addr().String())
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// gauges reads the supervisor at scrape time.
type gauges struct{ src Source }

var (
	agentsDesc  = prometheus.NewDesc("resilienced_agents", "Agents, by pool and state.", []string{"pool", "state"}, nil)
	poolDesc    = prometheus.NewDesc("resilienced_pool_state", "1 for the pool's current state.", []string{"pool", "state"}, nil)
	breakerDesc = prometheus.NewDesc("resilienced_breaker_state", "1 for the pool breaker's current state (closed, open, half-open).", []string{"pool", "state"}, nil)
	wantDesc    = prometheus.NewDesc("resilienced_pool_replicas", "Active agents the pool should have.", []string{"pool"}, nil)
)

func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- agentsDesc
	ch <- poolDesc
	ch <- breakerDesc
	ch <- wantDesc
	g.describeExtra(ch)
}

func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	states := []supervisor.AgentState{supervisor.AgentStarting, supervisor.AgentSpare, supervisor.AgentActive, supervisor.AgentDraining, supervisor.AgentIsolated}
	for _, p := range g.src.Status() {
		as, _ := g.src.Agents(p.Name)
		count := map[supervisor.AgentState]int{}
		for _, a := range as {
			count[a.State]++
		}
		for _, st := range states {
			ch <- prometheus.MustNewConstMetric(agentsDesc, prometheus.GaugeValue, float64(count[st]), p.Name, string(st))
		}
		for _, st := range []supervisor.PoolState{supervisor.PoolRunning, supervisor.PoolDegraded, supervisor.PoolFailed, supervisor.PoolStopped} {
			ch <- prometheus.MustNewConstMetric(poolDesc, prometheus.GaugeValue, b2f(p.State == st), p.Name, string(st))
		}
		for _, st := range []string{"closed", "open", "half-open"} {
			ch <- prometheus.MustNewConstMetric(breakerDesc, prometheus.GaugeValue, b2f(p.Breaker == st), p.Name, st)
		}
		ch <- prometheus.MustNewConstMetric(wantDesc, prometheus.GaugeValue, float64(p.Replicas), p.Name)
	}
	g.collectArbiter(ch)
	g.collectTelemetry(ch)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
