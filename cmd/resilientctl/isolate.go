package main

import (
	"fmt"
	"net/url"

	"github.com/spf13/cobra"
)

func init() {
	extraCommands = append(extraCommands, isolateCmd, releaseCmd)
}

func isolateCmd(g *globals) *cobra.Command {
	var node bool
	var action, reason string
	c := &cobra.Command{
		Use:   "isolate AGENT | --node [NAME]",
		Short: "Cut an agent (or this node) off the network: the Kill Switch",
		Long: "Cut an agent off the network: a cgroup_skb program on its cgroup drops all its\n" +
			"traffic, pinned in bpffs so the cut holds if the daemon dies. The agent leaves\n" +
			"service at once (a spare takes its place) and is then killed, frozen or kept,\n" +
			"as --action or the pool's isolate_action says. With --node, the node leaves the\n" +
			"mesh (the config's mesh: interface and CIDRs) through netlink. In cluster mode,\n" +
			"--node NAME isolates that node of the cluster, from any node: it leaves the ring,\n" +
			"takes no session and gives up its own, which move to the other nodes, and, with\n" +
			"mesh: in its config, cuts itself off its peers (etcd stays reachable), until\n" +
			"release --node NAME.",
		Args: args(func(cmd *cobra.Command, a []string) error {
			if !node && len(a) != 1 || len(a) > 1 {
				return fmt.Errorf("give an agent id, or --node [NAME]")
			}
			return nil
		}),
		RunE: func(cmd *cobra.Command, a []string) error {
			c := g.client()
			if node && len(a) == 1 {
				return isolateClusterNode(cmd, g, a[0], reason, false)
			}
			if node {
				var out map[string]any
				if err := c.Post(cmd.Context(), "/v1/node/isolate", nil, &out); err != nil {
					return err
				}
				if g.json() {
					return printJSON(out)
				}
				fmt.Printf("node isolated from the mesh (%v)\n", out["interface"])
				return nil
			}
			body := map[string]string{"action": action, "reason": reason}
			if err := c.Post(cmd.Context(), "/v1/agents/"+url.PathEscape(a[0])+"/isolate", body, nil); err != nil {
				return err
			}
			return g.done(map[string]any{"agent": a[0], "isolated": true}, "agent %s isolated", a[0])
		},
	}
	c.Flags().BoolVar(&node, "node", false, "isolate this node from the mesh, or with NAME that node of the cluster")
	c.Flags().StringVar(&action, "action", "", "then: kill | freeze | keep (default: the pool's isolate_action)")
	c.Flags().StringVar(&reason, "reason", "", "why, for the event log")
	return c
}

func releaseCmd(g *globals) *cobra.Command {
	var node bool
	c := &cobra.Command{
		Use:   "release AGENT | --node [NAME]",
		Short: "Undo an isolation exactly",
		Args: args(func(cmd *cobra.Command, a []string) error {
			if !node && len(a) != 1 || len(a) > 1 {
				return fmt.Errorf("give an agent id, or --node [NAME]")
			}
			return nil
		}),
		RunE: func(cmd *cobra.Command, a []string) error {
			c := g.client()
			if node && len(a) == 1 {
				return isolateClusterNode(cmd, g, a[0], "", true)
			}
			if node {
				if err := c.Post(cmd.Context(), "/v1/node/release", nil, nil); err != nil {
					return err
				}
				fmt.Println("node back on the mesh")
				return nil
			}
			if err := c.Post(cmd.Context(), "/v1/agents/"+url.PathEscape(a[0])+"/release", nil, nil); err != nil {
				return err
			}
			return g.done(map[string]any{"agent": a[0], "released": true}, "agent %s released", a[0])
		},
	}
	c.Flags().BoolVar(&node, "node", false, "bring this node back on the mesh, or with NAME that node of the cluster into service")
	return c
}
