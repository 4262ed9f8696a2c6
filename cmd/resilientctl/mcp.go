package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/resilienced/resilienced/internal/api"
	"github.com/resilienced/resilienced/internal/mcprelay"
)

func init() {
	extraCommands = append(extraCommands, mcpCmd)
}

func mcpCmd(g *globals) *cobra.Command {
	var pool string
	c := &cobra.Command{
		Use:   "mcp [--pool NAME]",
		Short: "Serve the daemon's pools as an MCP server on standard input and output",
		Long: "Serve the daemon's pools as MCP tools over MCP's stdio transport, for hosts that can only\n" +
			"launch stdio servers (Claude Desktop, IDEs): every JSON-RPC message read on standard input\n" +
			"is relayed to the daemon's MCP front door on its unix socket (/v1/mcp, or /v1/pools/NAME/mcp\n" +
			"with --pool), and every answer and server message is written on standard output, one a line.\n" +
			"No TCP port is opened: the socket's permissions apply. The MCP session belongs to the daemon:\n" +
			"agents that crash or hang mid-call are replaced and the call retried, unseen by the host. If\n" +
			"the daemon restarts, a new session is opened for the host. Logs go to standard error. It ends\n" +
			"at the end of standard input (or on SIGTERM), deleting its session.\n\n" +
			"A host's configuration (Claude Desktop's claude_desktop_config.json):\n" +
			"  {\"mcpServers\": {\"resilienced\": {\"command\": \"resilientctl\", \"args\": [\"mcp\", \"--pool\", \"ev\"]}}}",
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("cmd", "resilientctl mcp")
			client := g.client()
			if err := checkPool(ctx, client, pool); err != nil {
				return err
			}
			path := "/v1/mcp"
			if pool != "" {
				path = "/v1/pools/" + url.PathEscape(pool) + "/mcp"
			}
			return mcprelay.Run(ctx, mcprelay.Options{Client: client, URL: "http://resilienced" + path, In: os.Stdin, Out: os.Stdout, Log: log})
		},
	}
	c.Flags().StringVar(&pool, "pool", "", "serve this pool's tools only (default: every pool's)")
	return c
}

// checkPool refuses a pool the daemon does not have, with the names of
// those it has, before the host sends anything. A daemon out of reach is
// no reason to stop: it may be starting, and the relay tries it on every
// message (and says so on stderr).
func checkPool(ctx context.Context, c *api.Client, pool string) error {
	st, err := c.Status(ctx)
	var unreach *api.UnreachableError
	switch {
	case errors.As(err, &unreach):
		return nil
	case err != nil:
		return err
	case pool == "":
		return nil
	}
	var names []string
	for _, p := range st.Pools {
		if p.Name == pool {
			return nil
		}
		names = append(names, p.Name)
	}
	return fmt.Errorf("mcp: the daemon has no pool %q (its pools: %s)", pool, strings.Join(names, ", "))
}
