package api

import (
	"time"

	"github.com/resilienced/resilienced/internal/telemetry"
)

// AgentTelemetry is the answer to GET /v1/agents/{id}/telemetry: the
// agent's latest sample, in snake_case with durations in milliseconds
// (the unit in the name), as every answer of the API. A part the daemon
// could not sample is absent.
type AgentTelemetry struct {
	Agent string    `json:"agent"`
	EBPF  bool      `json:"ebpf"`
	Time  time.Time `json:"time"`
	// Rates come from eBPF counters since the previous sample.
	Rates *TelemetryRates `json:"rates,omitempty"`
	// Proc sums the agent's processes (procfs).
	Proc *TelemetryProc `json:"proc,omitempty"`
	PSI  *TelemetryPSI  `json:"psi,omitempty"`
}

// TelemetryRates are per-second rates over IntervalMS.
type TelemetryRates struct {
	IntervalMS        float64 `json:"interval_ms"`
	SyscallsPerSec    float64 `json:"syscalls_per_sec"`
	ErrorsPerSec      float64 `json:"errors_per_sec"`
	ErrorRatio        float64 `json:"error_ratio"`
	LatencySamples    uint64  `json:"latency_samples"`
	P50MS             float64 `json:"p50_ms"` // 0: unknown
	P99MS             float64 `json:"p99_ms"` // 0: unknown (fewer than 100 timed syscalls)
	RxBytesPerSec     float64 `json:"rx_bytes_per_sec"`
	TxBytesPerSec     float64 `json:"tx_bytes_per_sec"`
	RxPacketsPerSec   float64 `json:"rx_packets_per_sec"`
	TxPacketsPerSec   float64 `json:"tx_packets_per_sec"`
	RetransmitsPerSec float64 `json:"retransmits_per_sec"`
	ResetsPerSec      float64 `json:"resets_per_sec"`
}

// TelemetryProc is what procfs says of the agent's processes together.
type TelemetryProc struct {
	RSSBytes   uint64  `json:"rss_bytes"`
	CPUSeconds float64 `json:"cpu_seconds"`
	OpenFDs    int     `json:"open_fds"`
	Threads    int     `json:"threads"`
	Processes  int     `json:"processes"`
}

// TelemetryPSI is pressure stall information: the cgroup's own, or the
// system's (Scope).
type TelemetryPSI struct {
	Scope  string           `json:"scope"`
	CPU    TelemetryPSIPair `json:"cpu"`
	Memory TelemetryPSIPair `json:"memory"`
	IO     TelemetryPSIPair `json:"io"`
}

// TelemetryPSIPair is one resource's PSI lines.
type TelemetryPSIPair struct {
	Some TelemetryPSILine `json:"some"`
	Full TelemetryPSILine `json:"full"`
}

// TelemetryPSILine is the stalled share of wall time (percent) averaged
// over 10, 60 and 300 s, and the total stall.
type TelemetryPSILine struct {
	Avg10   float64 `json:"avg10"`
	Avg60   float64 `json:"avg60"`
	Avg300  float64 `json:"avg300"`
	TotalMS float64 `json:"total_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// NewAgentTelemetry is the wire form of an agent's sample.
func NewAgentTelemetry(agent string, ebpf bool, s telemetry.Stats) AgentTelemetry {
	t := AgentTelemetry{Agent: agent, EBPF: ebpf, Time: s.Time}
	if s.HaveRates {
		r := s.Rates
		t.Rates = &TelemetryRates{
			IntervalMS: ms(r.Interval), SyscallsPerSec: r.SyscallsPerSec, ErrorsPerSec: r.ErrorsPerSec,
			ErrorRatio: r.ErrorRatio, LatencySamples: r.LatencySamples, P50MS: ms(r.P50), P99MS: ms(r.P99),
			RxBytesPerSec: r.RxBytesPerSec, TxBytesPerSec: r.TxBytesPerSec,
			RxPacketsPerSec: r.RxPacketsPerSec, TxPacketsPerSec: r.TxPacketsPerSec,
			RetransmitsPerSec: r.RetransmitsPerSec, ResetsPerSec: r.ResetsPerSec,
		}
	}
	if s.HaveProc {
		p := s.Proc
		t.Proc = &TelemetryProc{RSSBytes: p.RSSBytes, CPUSeconds: p.CPUSeconds, OpenFDs: p.OpenFDs, Threads: p.Threads, Processes: p.Processes}
	}
	if s.HavePSI {
		line := func(l telemetry.PressureLine) TelemetryPSILine {
			return TelemetryPSILine{Avg10: l.Avg10, Avg60: l.Avg60, Avg300: l.Avg300, TotalMS: ms(l.Total)}
		}
		pair := func(p telemetry.Pressure) TelemetryPSIPair {
			return TelemetryPSIPair{Some: line(p.Some), Full: line(p.Full)}
		}
		t.PSI = &TelemetryPSI{Scope: s.PSI.Scope, CPU: pair(s.PSI.CPU), Memory: pair(s.PSI.Memory), IO: pair(s.PSI.IO)}
	}
	return t
}
