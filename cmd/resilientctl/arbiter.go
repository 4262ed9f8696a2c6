package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/resilienced/resilienced/internal/arbiter"
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
			var rep evalReport
			if err := remarshal(raw, &rep); err != nil {
				return err
			}
			printEval(os.Stdout, &rep)
			return nil
		},
	})
	return c
}

// evalReport is what `arbiter eval` prints of GET /v1/arbiter/eval.
type evalReport struct {
	Failures       int      `json:"failures"`
	Predicted      int      `json:"predicted"`
	Predictions    int      `json:"predictions"`
	TruePositives  int      `json:"true_positives"`
	FalsePositives int      `json:"false_positives"`
	Unverifiable   int      `json:"unverifiable"`
	Acted          int      `json:"acted"`
	Precision      *float64 `json:"precision"`
	Recall         *float64 `json:"recall"`
	LeadMSP50      *float64 `json:"lead_ms_p50"`
	FalsePerHour   float64  `json:"false_per_agent_hour"`
	Sudden         int      `json:"sudden"`
	Evidence       []struct {
		Time    time.Time `json:"time"`
		Agent   string    `json:"agent"`
		Risk    float64   `json:"risk"`
		Reasons []string  `json:"reasons"`
	} `json:"acted_evidence"`
	Holdout arbiter.HoldoutReport `json:"holdout"`
}

func remarshal(in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// printEval writes the report in three parts: what could be verified, what
// the Arbiter acted on (unverifiable), and the live holdout.
func printEval(w io.Writer, r *evalReport) {
	num := func(v *float64, format string) string {
		if v == nil {
			return "- (nothing verifiable)"
		}
		return fmt.Sprintf(format, *v)
	}
	fmt.Fprintf(w, "verifiable (replayed predictions whose horizon was seen through):\n")
	fmt.Fprintf(w, "  %-24s %d (%d true, %d false)\n", "predictions", r.TruePositives+r.FalsePositives, r.TruePositives, r.FalsePositives)
	fmt.Fprintf(w, "  %-24s %s\n", "precision", num(r.Precision, "%.3f"))
	fmt.Fprintf(w, "  %-24s %s (%d of %d slow-burn failures predicted)\n", "recall", num(r.Recall, "%.3f"), r.Predicted, r.Failures)
	fmt.Fprintf(w, "  %-24s %s\n", "lead p50", num(r.LeadMSP50, "%.0f ms"))
	fmt.Fprintf(w, "  %-24s %.2f\n", "false per agent-hour", r.FalsePerHour)
	fmt.Fprintf(w, "unverifiable:\n")
	fmt.Fprintf(w, "  %-24s %d (the agent was replaced before it could fail)\n", "acted on", r.Acted)
	fmt.Fprintf(w, "  %-24s %d (its agent stopped before the horizon ended)\n", "replayed, cut short", r.Unverifiable)
	for _, e := range r.Evidence {
		fmt.Fprintf(w, "    %s %s risk %.2f: %s\n", e.Time.Local().Format("15:04:05"), e.Agent, e.Risk, strings.Join(e.Reasons, "; "))
	}
	fmt.Fprintf(w, "  %-24s %d (nothing could predict them)\n", "sudden failures", r.Sudden)
	h := r.Holdout
	fmt.Fprintf(w, "held out (left alone on purpose, scored live):\n")
	fmt.Fprintf(w, "  %-24s %d (%d came true, %d false, %d unscored)\n", "predictions", h.Predictions, h.TruePositives, h.FalsePositives, h.Unscored)
	prec := num(h.Precision, "%.3f")
	if h.PrecisionCI != nil {
		prec += fmt.Sprintf(" (95%% interval %.2f-%.2f)", h.PrecisionCI[0], h.PrecisionCI[1])
	}
	fmt.Fprintf(w, "  %-24s %s\n", "precision", prec)
	if h.Needed > 0 {
		fmt.Fprintf(w, "  %-24s %d more held-out predictions for a figure within ±0.1\n", "confidence", h.Needed)
	} else {
		fmt.Fprintf(w, "  %-24s within ±0.1\n", "confidence")
	}
}
