package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

func init() {
	extraCommands = append(extraCommands, arbiterCmd)
}

type arbiterStatus struct {
	Risks []struct {
		Agent, Pool string
		Risk        float64
		Reasons     []string
		Predicted   bool
		HeldOut     bool `json:"held_out"`
	} `json:"risks"`
	Model struct {
		Learned      bool  `json:"learned"`
		Fits         int   `json:"fits"`
		SlowFailures int   `json:"slow_failures"`
		Positives    int64 `json:"positives"`
		Negatives    int64 `json:"negatives"`
	} `json:"model"`
}

func arbiterCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "arbiter",
		Short: "List agents with their risk of failing soon, and why",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.json() {
				var raw map[string]any
				if err := g.client().Get(cmd.Context(), "/v1/arbiter", &raw); err != nil {
					return err
				}
				return printJSON(raw)
			}
			var st arbiterStatus
			if err := g.client().Get(cmd.Context(), "/v1/arbiter", &st); err != nil {
				return err
			}
			m := st.Model
			model := "hand-set weights"
			if m.Learned {
				model = fmt.Sprintf("learned (%d fits)", m.Fits)
			}
			fmt.Printf("model: %s; %d slow-burn failures seen, %d positive and %d negative samples\n\n", model, m.SlowFailures, m.Positives, m.Negatives)
			table("AGENT\tPOOL\tRISK\tREASONS", func(w io.Writer) {
				for _, r := range st.Risks {
					why := strings.Join(r.Reasons, "; ")
					if r.HeldOut {
						why += " [held out]"
					}
					fmt.Fprintf(w, "%s\t%s\t%.2f\t%s\n", r.Agent, r.Pool, r.Risk, why)
				}
			})
			return nil
		},
	}
	c.AddCommand(&cobra.Command{
		Use:   "eval",
		Short: "Replay this node's recorded history, time-ordered, and score the predictions",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var raw map[string]any
			if err := g.client().Get(cmd.Context(), "/v1/arbiter/eval", &raw); err != nil {
				return err
			}
			if g.json() {
				return printJSON(raw)
			}
			for _, k := range []string{"failures", "predicted", "precision", "recall", "lead_ms_p50", "false_per_agent_hour", "sudden"} {
				fmt.Printf("%-22s %v\n", k, raw[k])
			}
			return nil
		},
	})
	return c
}
