package main

import (
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/resilienced/resilienced/internal/api"
)

func init() {
	extraCommands = append(extraCommands, telemetryCmd)
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
			var t api.AgentTelemetry
			if err := g.client().Get(cmd.Context(), "/v1/agents/"+url.PathEscape(a[0])+"/telemetry", &t); err != nil {
				return err
			}
			source := "procfs (eBPF off)"
			if t.EBPF {
				source = "eBPF"
			}
			fmt.Printf("agent %s  (%s, sampled %s ago)\n", t.Agent, source, time.Since(t.Time).Round(time.Millisecond))
			if r := t.Rates; r != nil {
				fmt.Printf("  syscalls     %.0f/s, errors %.0f/s, latency %s\n", r.SyscallsPerSec, r.ErrorsPerSec, latencyText(msDuration(r.P50MS), msDuration(r.P99MS), r.LatencySamples))
				fmt.Printf("  network      rx %.0f B/s, tx %.0f B/s, retransmits %.1f/s, resets %.1f/s\n", r.RxBytesPerSec, r.TxBytesPerSec, r.RetransmitsPerSec, r.ResetsPerSec)
			}
			if p := t.Proc; p != nil {
				fmt.Printf("  processes    %d, RSS %.1f MiB, CPU %.2fs, open fds %d\n", p.Processes, float64(p.RSSBytes)/(1<<20), p.CPUSeconds, p.OpenFDs)
			}
			if p := t.PSI; p != nil {
				fmt.Printf("  pressure     cpu %.2f%%, memory %.2f%% (some, avg10, %s)\n", p.CPU.Some.Avg10, p.Memory.Some.Avg10, p.Scope)
			}
			return nil
		},
	}
}

func msDuration(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

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
