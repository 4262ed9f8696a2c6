package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/resilienced/resilienced/internal/api"
)

type globals struct {
	socket string
	output string
}

func (g *globals) client() *api.Client {
	return api.NewClient(g.socket)
}

func (g *globals) json() bool { return g.output == "json" }

// done reports what an action did: v as JSON with -o json, else the line.
func (g *globals) done(v any, format string, args ...any) error {
	if g.json() {
		return printJSON(v)
	}
	fmt.Printf(format+"\n", args...)
	return nil
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "resilientctl",
		Short:         "Drive resilienced, the agent supervisor, over its local socket",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if g.output != "table" && g.output != "json" {
				return usageError{fmt.Errorf("-o: %q is not one of table, json", g.output)}
			}
			return nil
		},
	}
	def := os.Getenv("RESILIENT_SOCKET")
	if def == "" {
		def = api.ClientSocketPath()
	}
	root.PersistentFlags().StringVar(&g.socket, "socket", def, "daemon socket (env RESILIENT_SOCKET)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format: table | json")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })

	root.AddCommand(
		statusCmd(g), callCmd(g), agentsCmd(g), restartCmd(g), scaleCmd(g), drainCmd(g),
		eventsCmd(g), logsCmd(g), reloadCmd(g), upgradeCmd(g), sessionsCmd(g), sessionCmd(g), ringCmd(g), versionCmd(g),
	)
	for _, add := range extraCommands {
		root.AddCommand(add(g))
	}
	return root
}

// extraCommands are added by other files (isolate, telemetry, chaos, arbiter).
var extraCommands []func(*globals) *cobra.Command

// args wraps cobra's argument checks so a mistake is a usage error (exit 2).
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return usageError{fmt.Errorf("%s: %w (usage: %s)", cmd.Name(), err, cmd.UseLine())}
		}
		return nil
	}
}

func isCobraUsage(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "unknown command") || strings.HasPrefix(s, "unknown flag") ||
		strings.HasPrefix(s, "unknown shorthand flag") || strings.Contains(s, "requires at least") ||
		strings.HasPrefix(s, "invalid argument")
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(header string, rows func(w io.Writer)) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	rows(w)
	w.Flush()
}

func statusCmd(g *globals) *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "status [--cluster]",
		Short: "Show the node, its pools and agents (--cluster: every node's)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if all {
				return printClusterView(cmd.Context(), g, "/v1/cluster/status", printStatus)
			}
			st, err := g.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(st)
			}
			printStatus(st)
			return nil
		},
	}
	c.Flags().BoolVar(&all, "cluster", false, "every node of the cluster, asked through this one")
	return c
}

func printStatus(st *api.Status) {
	fmt.Printf("node %s  version %s  cgroup %s  ebpf %v\n", st.Node, st.Version, st.Mode.Cgroup, st.Mode.EBPF)
	if c := st.Config; c != nil {
		fmt.Printf("config %s  generation %d  loaded %s\n", cmp.Or(c.Path, "(defaults)"), c.Generation, c.LoadedAt.Local().Format(time.DateTime))
		if c.LastReloadError != "" {
			fmt.Printf("  the last reload failed (the config above still runs):\n    %s\n", strings.ReplaceAll(c.LastReloadError, "\n", "\n    "))
		}
	}
	for _, n := range st.Mode.Notes {
		fmt.Printf("  note: %s\n", n)
	}
	fmt.Println()
	table("POOL\tSTATE\tACTIVE\tSPARES\tRESTARTS\tBREAKER\tREASON", func(w io.Writer) {
		for _, p := range st.Pools {
			fmt.Fprintf(w, "%s\t%s\t%d/%d\t%d/%d\t%d\t%s\t%s\n", p.Name, p.State, p.Active, p.Replicas, p.Spares, p.SparesWanted, p.Restarts, p.Breaker, p.Reason)
		}
	})
	fmt.Println()
	printAgents(st.Agents)
}

func printAgents(as []api.AgentStatus) {
	table("AGENT\tPOOL\tSTATE\tPID\tCALLS\tUP\tCGROUP", func(w io.Writer) {
		for _, a := range as {
			up := time.Since(a.Started).Round(time.Second)
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", a.ID, a.Pool, a.State, a.PID, a.Calls, up, a.Cgroup)
		}
	})
}

func callCmd(g *globals) *cobra.Command {
	var sessionID, key string
	var timeout time.Duration
	var stream bool
	var inflight int
	c := &cobra.Command{
		Use:   "call POOL [INPUT_JSON | -]",
		Short: "Run one call on a pool and print the validated result",
		Long: "Run one call on a pool. The input is a JSON value given as an argument, or read from\n" +
			"standard input with -. The validated result JSON is printed on standard output.\n\n" +
			"With --stream, run many calls over one call stream: standard input holds one call per\n" +
			"line, {\"id\": ID, \"input\": …, \"session\": \"…\", \"key\": \"…\", \"timeout\": \"5s\"} (ID a string or\n" +
			"number), and one answer per call is printed as it completes, in any order:\n" +
			"{\"id\": ID, \"output\": …, \"agent\": \"…\", \"attempts\": N} or {\"id\": ID, \"status\": S, \"line\": L,\n" +
			"\"error\": {\"code\": \"…\", \"message\": \"…\"}}. The exit status is 1 if any call failed.",
		Args: args(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if stream {
				if len(a) > 1 || sessionID != "" || key != "" || timeout != 0 {
					return usageError{fmt.Errorf("call --stream: the calls, with their session, key and timeout, are read from standard input, one JSON object per line")}
				}
				return streamCalls(cmd.Context(), g.client(), a[0], inflight, os.Stdin, os.Stdout)
			}
			input := "null"
			if len(a) == 2 {
				input = a[1]
			}
			if input == "-" {
				b, err := io.ReadAll(io.LimitReader(os.Stdin, api.MaxBodyBytes))
				if err != nil {
					return err
				}
				input = strings.TrimSpace(string(b))
			}
			if !json.Valid([]byte(input)) {
				return usageError{fmt.Errorf("input is not valid JSON: %.80q (quote strings: '\"hello\"')", input)}
			}
			req := api.CallRequest{Input: json.RawMessage(input), Session: sessionID, Key: key}
			if timeout > 0 {
				req.Timeout = timeout.String()
			}
			res, err := g.client().Call(cmd.Context(), a[0], req)
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(res)
			}
			os.Stdout.Write(append(res.Output, '\n'))
			return nil
		},
	}
	c.Flags().StringVar(&sessionID, "session", "", "session id: the call gets the session's context and extends it")
	c.Flags().StringVar(&key, "key", "", "idempotency key: a repeat returns the stored result")
	c.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (default 60s)")
	c.Flags().BoolVar(&stream, "stream", false, "read calls from standard input, one JSON object per line, and print their answers as they complete")
	c.Flags().IntVar(&inflight, "inflight", 0, fmt.Sprintf("with --stream: calls running at once (default %d)", api.DefaultStreamInFlight))
	return c
}

// streamCalls sends each line of in as a call on one call stream (blank
// and malformed lines too, so that the daemon's line numbers are in's) and
// writes each answer to out as one JSON line.
func streamCalls(ctx context.Context, c *api.Client, pool string, inflight int, in io.Reader, out io.Writer) error {
	st, err := c.CallStream(ctx, pool, api.StreamOptions{InFlight: inflight})
	if err != nil {
		return err
	}
	defer st.Close()
	readErr := make(chan error, 1)
	go func() {
		br := bufio.NewReaderSize(in, 64<<10)
		for {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 {
				if serr := st.SendLine(bytes.TrimRight(line, "\r\n")); serr != nil {
					readErr <- nil // Recv says why
					return
				}
			}
			if err == io.EOF {
				readErr <- st.CloseSend()
				return
			}
			if err != nil {
				readErr <- fmt.Errorf("reading the calls: %w", err)
				st.Close()
				return
			}
		}
	}()
	bw := bufio.NewWriter(out)
	calls, failed := 0, 0
	for {
		a, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			bw.Flush()
			select {
			case rerr := <-readErr:
				if rerr != nil {
					return rerr
				}
			default: // still reading: the stream's error says more
			}
			return err
		}
		calls++
		if a.Error != nil {
			failed++
		}
		b, err := json.Marshal(a)
		if err != nil {
			return err
		}
		bw.Write(append(b, '\n'))
		if err := bw.Flush(); err != nil {
			return err
		}
	}
	if err := <-readErr; err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d calls failed", failed, calls)
	}
	return nil
}

func agentsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "agents [POOL]",
		Short: "List agents",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			pool := ""
			if len(a) == 1 {
				pool = a[0]
			}
			as, err := g.client().Agents(cmd.Context(), pool)
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(as)
			}
			printAgents(as)
			return nil
		},
	}
}

func restartCmd(g *globals) *cobra.Command {
	var allAtOnce bool
	c := &cobra.Command{
		Use:   "restart AGENT|POOL [--all-at-once]",
		Short: "Replace one agent, or every agent of a pool one by one (clears a failed pool)",
		Long: "Replace one agent, or every agent of a pool. A pool rolls: each agent is replaced once a new one\n" +
			"is ready to take its place, so its replicas keep serving. --all-at-once stops them all first.",
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			c := g.client()
			err := c.RestartAgent(cmd.Context(), a[0])
			var e *api.Error
			if errors.As(err, &e) && e.Code == api.CodeUnknownAgent {
				if perr := c.RestartPool(cmd.Context(), a[0], allAtOnce); perr == nil {
					return g.done(map[string]any{"pool": a[0], "restarting": true, "all_at_once": allAtOnce}, "pool %s restarting", a[0])
				} else if errors.As(perr, &e) && e.Code == api.CodeUnknownPool {
					return fmt.Errorf("%q is neither an agent nor a pool (see `resilientctl agents`)", a[0])
				} else {
					return perr
				}
			}
			if err != nil {
				return err
			}
			return g.done(map[string]any{"agent": a[0], "restarted": true}, "agent %s restarted", a[0])
		},
	}
	c.Flags().BoolVar(&allAtOnce, "all-at-once", false, "stop every agent of the pool first (no capacity until new ones are ready)")
	return c
}

func scaleCmd(g *globals) *cobra.Command {
	var req api.ScaleRequest
	c := &cobra.Command{
		Use:   "scale POOL N [--force] [--allow-zero]",
		Short: "Set a pool's number of active agents",
		Long: "Set a pool's number of active agents until the next restart or a change of replicas in the file.\n" +
			"A newer scale calls off the starts an older one ordered. Over the pool's bound (max_replicas, by default\n" +
			"from the node's CPUs and memory) it is refused without --force; 0 without --allow-zero.",
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			n, err := strconv.Atoi(a[1])
			if err != nil || n < 0 {
				return usageError{fmt.Errorf("scale: %q is not a number of replicas", a[1])}
			}
			req.Replicas = n
			if err := g.client().Scale(cmd.Context(), a[0], req); err != nil {
				return err
			}
			return g.done(map[string]any{"pool": a[0], "replicas": n}, "pool %s scaled to %d", a[0], n)
		},
	}
	c.Flags().BoolVar(&req.Force, "force", false, "go over the pool's bound (max_replicas)")
	c.Flags().BoolVar(&req.AllowZero, "allow-zero", false, "allow 0 replicas: the pool stops serving")
	return c
}

func drainCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "drain AGENT",
		Short: "Stop routing calls to an agent, finish its call in flight, then stop it",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := g.client().Drain(cmd.Context(), a[0]); err != nil {
				return err
			}
			return g.done(map[string]any{"agent": a[0], "draining": true}, "agent %s draining", a[0])
		},
	}
}

func eventsCmd(g *globals) *cobra.Command {
	var q api.EventQuery
	c := &cobra.Command{
		Use:   "events [--follow] [--since DURATION] [--pool POOL] [--agent AGENT] [--kind KIND,...] [--tail N]",
		Short: "Show supervision events (with -o json, one JSON object per line)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			enc := json.NewEncoder(os.Stdout)
			if !g.json() {
				fmt.Printf("%-12s  %-10s %-10s %-12s %s\n", "TIME", "KIND", "POOL", "AGENT", "DETAIL")
			}
			return g.client().Events(cmd.Context(), q, func(ev api.Event) error {
				if g.json() {
					return enc.Encode(ev)
				}
				line := fmt.Sprintf("%s  %-10s %-10s %-12s %s", ev.Time.Format("15:04:05.000"), ev.Kind, ev.Pool, ev.Agent, ev.Reason)
				if ev.Class != "" {
					line += " class=" + string(ev.Class)
				}
				if ev.RecoverMS != nil {
					line += fmt.Sprintf(" cause=%s detect=%.2fms recover=%.2fms", ev.Cause, *ev.DetectMS, *ev.RecoverMS)
				}
				_, err := fmt.Println(strings.TrimRight(line, " "))
				return err
			})
		},
	}
	c.Flags().BoolVarP(&q.Follow, "follow", "f", false, "keep streaming new events")
	c.Flags().DurationVar(&q.Since, "since", 0, "only events of the last DURATION (e.g. 5m)")
	c.Flags().StringVar(&q.Pool, "pool", "", "only the events of this pool")
	c.Flags().StringVar(&q.Agent, "agent", "", "only the events of this agent")
	c.Flags().StringSliceVar(&q.Kinds, "kind", nil, "only events of these kinds (comma-separated: violation,hang,...)")
	c.Flags().IntVarP(&q.Tail, "tail", "n", 0, "only the last N remembered events (then --follow goes on from there)")
	return c
}

func reloadCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Apply the daemon's config file again; print what changed, or every error (exit 2)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := g.client().Reload(cmd.Context())
			var e *api.Error
			if errors.As(err, &e) && e.Code == api.CodeInvalidConfig {
				return usageError{fmt.Errorf("the config file is invalid; the running config is kept:\n%s", e.Message)}
			}
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(res)
			}
			fmt.Printf("config %s: generation %d\n", res.Path, res.Generation)
			for _, c := range []struct {
				what  string
				pools []string
			}{{"added", res.Added}, {"removed", res.Removed}, {"changed", res.Changed}} {
				if len(c.pools) > 0 {
					fmt.Printf("  %s: %s\n", c.what, strings.Join(c.pools, ", "))
				}
			}
			if len(res.Added)+len(res.Removed)+len(res.Changed) == 0 {
				fmt.Println("  no pool changed")
			}
			if res.LastReloadError != "" {
				fmt.Printf("  but: %s\n", res.LastReloadError)
			}
			return nil
		},
	}
}

func logsCmd(g *globals) *cobra.Command {
	var tail int
	var follow bool
	c := &cobra.Command{
		Use:   "logs AGENT|POOL [--tail N] [--follow]",
		Short: "Show the last stderr lines of an agent, or of a pool's agents (the latest dead ones too)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			lines, err := g.client().Logs(cmd.Context(), a[0], tail)
			if err != nil {
				return err
			}
			if g.json() && !follow {
				return printJSON(lines)
			}
			enc := json.NewEncoder(os.Stdout)
			show := func(l api.LogLine) {
				if g.json() {
					enc.Encode(l)
					return
				}
				fmt.Printf("%s  %-14s %s\n", l.Time.Format("15:04:05.000"), l.Agent, l.Line)
			}
			// Keyed by instant, not time.Time: each answer's times carry
			// their own *Location.
			type key struct {
				at          int64
				agent, line string
			}
			keyOf := func(l api.LogLine) key { return key{l.Time.UnixNano(), l.Agent, l.Line} }
			seen := map[key]bool{}
			for _, l := range lines {
				show(l)
				seen[keyOf(l)] = true
			}
			// --follow polls: the daemon keeps the last lines of each agent,
			// so a line is new if it was not in the previous answer.
			for follow {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(500 * time.Millisecond):
				}
				lines, err := g.client().Logs(cmd.Context(), a[0], 0)
				if err != nil {
					return err
				}
				next := make(map[key]bool, len(lines))
				for _, l := range lines {
					if !seen[keyOf(l)] {
						show(l)
					}
					next[keyOf(l)] = true
				}
				seen = next
			}
			return nil
		},
	}
	c.Flags().IntVarP(&tail, "tail", "n", 0, "only the last N lines")
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines (-o json: one object per line)")
	return c
}

func sessionsCmd(g *globals) *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "sessions [POOL] [--cluster]",
		Short: "List sessions (in cluster mode: those this node owns; --cluster: every node's)",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			pool := ""
			if len(a) == 1 {
				pool = a[0]
			}
			if all {
				path := "/v1/cluster/sessions"
				if pool != "" {
					path += "?pool=" + url.QueryEscape(pool)
				}
				return printClusterView(cmd.Context(), g, path, func(ss *[]api.SessionInfo) { printSessions(*ss) })
			}
			ss, err := g.client().Sessions(cmd.Context(), pool)
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(ss)
			}
			printSessions(ss)
			return nil
		},
	}
	c.Flags().BoolVar(&all, "cluster", false, "every node of the cluster, asked through this one")
	return c
}

func printSessions(ss []api.SessionInfo) {
	table("SESSION\tPOOL\tENTRIES\tBYTES\tUPDATED", func(w io.Writer) {
		for _, s := range ss {
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\n", s.ID, s.Pool, s.Entries, s.Bytes, s.Updated.Format(time.RFC3339))
		}
	})
}

func sessionCmd(g *globals) *cobra.Command {
	var pool string
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a session's context, entry by entry",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			d, err := g.client().Session(cmd.Context(), pool, a[0])
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(d)
			}
			fmt.Printf("session %s (pool %s): %d entries\n", d.ID, d.Pool, len(d.Context))
			for _, ex := range d.Context {
				fmt.Printf("\n#%d  %s  %s\n  input:  %s\n  output: %s\n", ex.Seq, ex.Time.Format(time.RFC3339), ex.Agent, ex.Input, ex.Output)
			}
			return nil
		},
	}
	show.Flags().StringVar(&pool, "pool", "", "the session's pool (needed only if the id exists in several)")
	c := &cobra.Command{Use: "session", Short: "Inspect one session", Args: args(cobra.NoArgs)}
	c.AddCommand(show)
	return c
}

func ringCmd(g *globals) *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "ring POOL [--cluster]",
		Short: "Show a pool's session ring: members, states, key share, imbalance (--cluster: on every node)",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if all {
				return printClusterView(cmd.Context(), g, "/v1/cluster/pools/"+url.PathEscape(a[0])+"/ring", printRing)
			}
			r, err := g.client().Ring(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			if g.json() {
				return printJSON(r)
			}
			printRing(r)
			return nil
		},
	}
	c.Flags().BoolVar(&all, "cluster", false, "every node of the cluster, asked through this one")
	return c
}

func printRing(r *api.RingInfo) {
	fmt.Printf("pool %s: %d sessions, imbalance (max/mean) %.2f\n\n", r.Pool, r.Keys, r.Imbalance)
	table("AGENT\tSTATE\tSESSIONS\tHASH SHARE", func(w io.Writer) {
		for _, m := range r.Members {
			fmt.Fprintf(w, "%s\t%s\t%d\t%.1f%%\n", m.Agent, m.State, m.Keys, 100*m.Share)
		}
	})
}

func versionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the client's and the daemon's versions",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := g.client().Version(cmd.Context())
			daemon := v.Version
			if err != nil {
				daemon = "unreachable"
			}
			if g.json() {
				return printJSON(map[string]string{"client": version, "daemon": daemon})
			}
			fmt.Printf("resilientctl %s\nresilienced  %s\n", version, daemon)
			return nil
		},
	}
}
