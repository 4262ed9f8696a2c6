package main

import (
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

func init() {
	extraCommands = append(extraCommands, telemetryCmd)
}

// agentTelemetry mirrors the daemon's answer; only what is printed is named.
type agentTelemetry struct {
	Agent string `json:"agent"`
	EBPF  bool   `json:"ebpf"`
	Stats struct {
		Time  time.Time `json:"Time"`
		Rates struct {
			Interval                        time.Duration
			SyscallsPerSec, ErrorsPerSec    float64
			P50, P99                        time.Duration
			LatencySamples                  uint64
			RxBytesPerSec, TxBytesPerSec    float64
			RetransmitsPerSec, ResetsPerSec float64
		}
		HaveRates bool
		Proc      struct {
			RSSBytes   uint64
			CPUSeconds float64
			OpenFDs    int
			Processes  int
		}
		HaveProc bool
		PSI      struct {
			Scope       string
			CPU, Memory struct{ Some struct{ Avg10 float64 } }
		}
		HavePSI bool
	} `json:"stats"`
}

func telemetryCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "telemetry AGENT",
		Short: "Show an agent's telemetry: syscalls/s, errors/s, latency p50/p99, network, memory, PSI",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			var raw map[string]any
			if g.json() {
				if err := g.client().Get(cmd.Context(), "/v1/agents/"+url.PathEscape(a[0])+"/telemetry", &raw); err != nil {
					return err
				}
				return printJSON(raw)
			}
			var t agentTelemetry
			if err := g.client().Get(cmd.Context(), "/v1/agents/"+url.PathEscape(a[0])+"/telemetry", &t); err != nil {
				return err
			}
			s := t.Stats
			source := "procfs (eBPF off)"
			if t.EBPF {
				source = "eBPF"
			}
			fmt.Printf("agent %s  (%s, sampled %s ago)\n", t.Agent, source, time.Since(s.Time).Round(time.Millisecond))
			if s.HaveRates {
				r := s.Rates
				fmt.Printf("  syscalls     %.0f/s, errors %.0f/s, latency %s\n", r.SyscallsPerSec, r.ErrorsPerSec, latencyText(r.P50, r.P99, r.LatencySamples))
				fmt.Printf("  network      rx %.0f B/s, tx %.0f B/s, retransmits %.1f/s, resets %.1f/s\n", r.RxBytesPerSec, r.TxBytesPerSec, r.RetransmitsPerSec, r.ResetsPerSec)
			}
			if s.HaveProc {
				fmt.Printf("  processes    %d, RSS %.1f MiB, CPU %.2fs, open fds %d\n", s.Proc.Processes, float64(s.Proc.RSSBytes)/(1<<20), s.Proc.CPUSeconds, s.Proc.OpenFDs)
			}
			if s.HavePSI {
				fmt.Printf("  pressure     cpu %.2f%%, memory %.2f%% (some, avg10, %s)\n", s.PSI.CPU.Some.Avg10, s.PSI.Memory.Some.Avg10, s.PSI.Scope)
			}
			return nil
		},
	}
}

// latencyText says what the sampled syscall latencies allow: the daemon
// times one syscall in 16, and gives no p99 from fewer than 100 of them.
func latencyText(p50, p99 time.Duration, samples uint64) string {
	switch {
	case samples == 0 && p50 == 0:
		return "n/a (no syscall timed)"
	case p99 == 0:
		return fmt.Sprintf("p50 %s, p99 n/a (%d syscalls timed)", p50, samples)
	}
	return fmt.Sprintf("p50 %s, p99 %s (%d syscalls timed)", p50, p99, samples)
}
