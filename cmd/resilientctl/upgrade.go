package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/resilienced/resilienced/internal/api"
)

// upgradeCmd asks a daemon not run by systemd to hand its agents over to a
// new instance of its binary (the file on disk, so a replaced file takes
// effect), and waits for the new instance to serve.
func upgradeCmd(g *globals) *cobra.Command {
	var wait time.Duration
	c := &cobra.Command{
		Use:   "upgrade",
		Short: "Restart the daemon from its binary on disk, keeping every agent (not under systemd: use systemctl restart there)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl := g.client()
			res, err := cl.Upgrade(cmd.Context())
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), wait)
			defer cancel()
			st, err := waitNewInstance(ctx, cl, res.PID)
			if err != nil {
				return fmt.Errorf("pid %d handed over to %s, but: %w", res.PID, res.Executable, err)
			}
			if g.json() {
				return printJSON(st)
			}
			n := 0
			if as, err := cl.Agents(cmd.Context(), ""); err == nil {
				n = len(as)
			}
			fmt.Printf("upgraded: pid %d -> %d (%s, version %s), %d agents\n", res.PID, st.PID, res.Executable, st.Version, n)
			return nil
		},
	}
	c.Flags().DurationVar(&wait, "wait", 2*time.Minute, "how long to wait for the new instance to serve")
	return c
}

// waitNewInstance polls the status until another process than old answers
// with every pool at strength.
func waitNewInstance(ctx context.Context, cl *api.Client, old int) (*api.Status, error) {
	var last error
	for {
		st, err := cl.Status(ctx)
		if err == nil && st.PID != old && st.PID != 0 {
			ready := true
			for _, p := range st.Pools {
				ready = ready && p.Active >= p.Replicas
			}
			if ready {
				return st, nil
			}
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return nil, fmt.Errorf("the new instance is not serving: %w", last)
			}
			return nil, fmt.Errorf("the new instance is not serving: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
