package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

// clusterView is what GET /v1/cluster/nodes answers (cluster.ClusterView),
// the fields shown: the CLI does not link the etcd client for a type.
type clusterView struct {
	Node   string `json:"node"`
	Quorum string `json:"quorum"`
	Nodes  []struct {
		Name      string    `json:"name"`
		Advertise string    `json:"advertise"`
		Health    string    `json:"health"`
		Started   time.Time `json:"started"`
		RingShare float64   `json:"ring_share"`
		Sessions  int       `json:"sessions"`
		Heartbeat string    `json:"heartbeat"`
		Isolation *struct {
			By     string `json:"by"`
			Reason string `json:"reason"`
		} `json:"isolation"`
	} `json:"nodes"`
}

func init() {
	extraCommands = append(extraCommands, nodesCmd)
}

func nodesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "nodes",
		Short: "Cluster mode: the nodes, their ring share, sessions owned and heartbeat",
		Long: "List the cluster's registered nodes as the daemon asked sees them: health\n" +
			"(serving, draining, isolated), share of the ring over the nodes, sessions\n" +
			"owned (owner records in etcd), and this daemon's heartbeat of each.",
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var v clusterView
			var raw json.RawMessage
			if err := g.client().Get(cmd.Context(), "/v1/cluster/nodes", &raw); err != nil {
				return err
			}
			if g.json() {
				return printJSON(raw)
			}
			if err := json.Unmarshal(raw, &v); err != nil {
				return err
			}
			fmt.Printf("as node %s sees the cluster", v.Node)
			if v.Quorum != "" {
				fmt.Printf(" (%s)", v.Quorum)
			}
			fmt.Print("\n\n")
			table("NODE\tADVERTISE\tHEALTH\tRING SHARE\tSESSIONS\tHEARTBEAT\tUP\tISOLATED BY", func(w io.Writer) {
				for _, n := range v.Nodes {
					by := "-"
					if n.Isolation != nil {
						by = n.Isolation.By
						if n.Isolation.Reason != "" {
							by += ": " + n.Isolation.Reason
						}
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%.1f%%\t%d\t%s\t%s\t%s\n", n.Name, n.Advertise, n.Health, 100*n.RingShare, n.Sessions, n.Heartbeat,
						time.Since(n.Started).Round(time.Second), by)
				}
			})
			return nil
		},
	}
}

// isolateClusterNode isolates (or releases) a node of the cluster by
// name, through any node: resilientctl isolate|release --node NAME.
func isolateClusterNode(cmd *cobra.Command, g *globals, name, reason string, release bool) error {
	verb, body := "isolate", any(map[string]string{"reason": reason})
	if release {
		verb, body = "release", nil
	}
	var out map[string]any
	if err := g.client().Post(cmd.Context(), "/v1/cluster/nodes/"+url.PathEscape(name)+"/"+verb, body, &out); err != nil {
		return err
	}
	if release {
		return g.done(out, "node %s released: it serves again", name)
	}
	return g.done(out, "node %s isolated: it left the ring and its sessions move", name)
}

// clusterAnswers is what the --cluster views answer: each node's own view
// (cluster.NodeAnswer), gathered by the node asked.
type clusterAnswers struct {
	Node  string `json:"node"`
	Nodes []struct {
		Node  string          `json:"node"`
		View  json.RawMessage `json:"view"`
		Error string          `json:"error"`
	} `json:"nodes"`
}

// printClusterView prints the view at path of every node: with -o json as the
// daemon answers it, else one section per node, printed by show; a node
// that did not answer is listed with why. It fails when none answered.
func printClusterView[T any](ctx context.Context, g *globals, path string, show func(*T)) error {
	var raw json.RawMessage
	if err := g.client().Get(ctx, path, &raw); err != nil {
		return err
	}
	if g.json() {
		return printJSON(raw)
	}
	var a clusterAnswers
	if err := json.Unmarshal(raw, &a); err != nil {
		return fmt.Errorf("the daemon's answer: %w", err)
	}
	answered := 0
	for i, n := range a.Nodes {
		if i > 0 {
			fmt.Println()
		}
		if n.Error != "" {
			fmt.Printf("== node %s: no answer: %s\n", n.Node, n.Error)
			continue
		}
		v := new(T)
		if err := json.Unmarshal(n.View, v); err != nil {
			fmt.Printf("== node %s: its answer does not read: %v\n", n.Node, err)
			continue
		}
		answered++
		fmt.Printf("== node %s\n", n.Node)
		show(v)
	}
	if answered == 0 {
		return fmt.Errorf("no node of the cluster answered (asked through %s)", a.Node)
	}
	return nil
}
