package metrics

import "github.com/prometheus/client_golang/prometheus"

// ArbiterPool is one pool's Arbiter figures, read at scrape time.
type ArbiterPool struct {
	Pool string
	// Acted and HeldOut count predictions since the daemon started: acted
	// on (the agent replaced) and left alone on purpose (the holdout).
	Acted, HeldOut uint64
	// CameTrue and FalseAlarms count held-out predictions once their
	// horizon is over: the agent failed within it, or did not.
	CameTrue, FalseAlarms uint64
	// MaxRisk is the highest risk among the pool's agents now.
	MaxRisk float64
}

// ArbiterSource is implemented by a [Source] whose daemon runs the Arbiter.
type ArbiterSource interface {
	ArbiterPools() []ArbiterPool
}

// PoolTelemetry is a pool's agents' latest telemetry, summed.
type PoolTelemetry struct {
	Pool                                string
	RSSBytes                            float64
	SyscallsPerSec, SyscallErrorsPerSec float64
	RxBytesPerSec, TxBytesPerSec        float64
	RetransmitsPerSec                   float64
}

// TelemetrySource is implemented by a [Source] that reads agents'
// telemetry (eBPF, or procfs without it).
type TelemetrySource interface {
	PoolTelemetry() []PoolTelemetry
}

var (
	arbPredDesc    = prometheus.NewDesc("resilienced_arbiter_predictions_total", "Arbiter predictions that an agent is about to fail, by pool and action (acted: replaced; held_out: left alone to measure precision).", []string{"pool", "action"}, nil)
	arbOutcomeDesc = prometheus.NewDesc("resilienced_arbiter_held_out_outcomes_total", "Held-out Arbiter predictions scored once their horizon is over, by outcome (came_true, false_alarm).", []string{"pool", "outcome"}, nil)
	arbRiskDesc    = prometheus.NewDesc("resilienced_arbiter_risk_max", "The highest Arbiter risk among the pool's agents (probability of failing soon).", []string{"pool"}, nil)

	telRSSDesc      = prometheus.NewDesc("resilienced_pool_memory_rss_bytes", "Resident memory of the pool's agents, summed.", []string{"pool"}, nil)
	telSyscallsDesc = prometheus.NewDesc("resilienced_pool_syscalls_per_second", "System calls per second of the pool's agents (eBPF).", []string{"pool"}, nil)
	telErrorsDesc   = prometheus.NewDesc("resilienced_pool_syscall_errors_per_second", "Failing system calls per second of the pool's agents (eBPF).", []string{"pool"}, nil)
	telNetDesc      = prometheus.NewDesc("resilienced_pool_network_bytes_per_second", "Network bytes per second of the pool's agents, by direction (rx, tx; eBPF).", []string{"pool", "direction"}, nil)
	telRetransDesc  = prometheus.NewDesc("resilienced_pool_tcp_retransmits_per_second", "TCP segments retransmitted per second by the pool's agents (eBPF).", []string{"pool"}, nil)
)

func (g *gauges) describeExtra(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{arbPredDesc, arbOutcomeDesc, arbRiskDesc, telRSSDesc, telSyscallsDesc, telErrorsDesc, telNetDesc, telRetransDesc} {
		ch <- d
	}
}

func (g *gauges) collectArbiter(ch chan<- prometheus.Metric) {
	src, ok := g.src.(ArbiterSource)
	if !ok {
		return
	}
	for _, p := range src.ArbiterPools() {
		ch <- prometheus.MustNewConstMetric(arbPredDesc, prometheus.CounterValue, float64(p.Acted), p.Pool, "acted")
		ch <- prometheus.MustNewConstMetric(arbPredDesc, prometheus.CounterValue, float64(p.HeldOut), p.Pool, "held_out")
		ch <- prometheus.MustNewConstMetric(arbOutcomeDesc, prometheus.CounterValue, float64(p.CameTrue), p.Pool, "came_true")
		ch <- prometheus.MustNewConstMetric(arbOutcomeDesc, prometheus.CounterValue, float64(p.FalseAlarms), p.Pool, "false_alarm")
		ch <- prometheus.MustNewConstMetric(arbRiskDesc, prometheus.GaugeValue, p.MaxRisk, p.Pool)
	}
}

func (g *gauges) collectTelemetry(ch chan<- prometheus.Metric) {
	src, ok := g.src.(TelemetrySource)
	if !ok {
		return
	}
	for _, p := range src.PoolTelemetry() {
		ch <- prometheus.MustNewConstMetric(telRSSDesc, prometheus.GaugeValue, p.RSSBytes, p.Pool)
		ch <- prometheus.MustNewConstMetric(telSyscallsDesc, prometheus.GaugeValue, p.SyscallsPerSec, p.Pool)
		ch <- prometheus.MustNewConstMetric(telErrorsDesc, prometheus.GaugeValue, p.SyscallErrorsPerSec, p.Pool)
		ch <- prometheus.MustNewConstMetric(telNetDesc, prometheus.GaugeValue, p.RxBytesPerSec, p.Pool, "rx")
		ch <- prometheus.MustNewConstMetric(telNetDesc, prometheus.GaugeValue, p.TxBytesPerSec, p.Pool, "tx")
		ch <- prometheus.MustNewConstMetric(telRetransDesc, prometheus.GaugeValue, p.RetransmitsPerSec, p.Pool)
	}
}
