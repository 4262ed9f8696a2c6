package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"

	"github.com/resilienced/resilienced/internal/config"
	"github.com/resilienced/resilienced/internal/mcp"
	"github.com/resilienced/resilienced/internal/supervisor"
)

// serveLocalMCP serves the MCP front door on the API's unix socket, at
// /v1/mcp and /v1/pools/{pool}/mcp, whatever mcp.listen says: the socket's
// peer check (its group) guards it as it guards the rest of the API, so no
// TCP port needs opening for `resilientctl mcp`, the stdio relay. Its
// sessions are its own, apart from the TCP front door's.
func (d *daemon) serveLocalMCP() {
	front := mcp.New(mcp.Options{Pools: mcpPools{d}, Version: version, Logger: d.log})
	h := http.StripPrefix("/v1", front)
	closing, closed := context.WithCancel(context.Background())
	d.closeLocalMCP = closed
	serve := func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			// A GET is a session's stream of the server's messages, open
			// while the session lives: the API's shutdown ends it rather
			// than wait for it. Calls (POST) finish as the API's do.
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			defer context.AfterFunc(closing, cancel)()
			r = r.WithContext(ctx)
		}
		h.ServeHTTP(w, r)
	}
	d.server.Handle("/v1/mcp", serve)
	d.server.Handle("/v1/pools/{pool}/mcp", serve)
}

// startMCP opens the MCP front door when the config asks for it (mcp.listen).
func (d *daemon) startMCP(cfg *config.Config) error {
	fc := cfg.MCP
	if fc.Listen == "" {
		return nil
	}
	var tokens []string
	if fc.TokensFile != "" {
		var err error
		if tokens, err = mcp.LoadTokens(fc.TokensFile); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", fc.Listen)
	if err != nil {
		return fmt.Errorf("mcp: %w", err)
	}
	if host, _, _ := net.SplitHostPort(fc.Listen); len(tokens) == 0 && !isLoopback(host) {
		d.log.Warn("the MCP front door listens beyond this host without tokens: anyone who reaches it can call every pool", "listen", fc.Listen)
	}
	d.mcp = mcp.New(mcp.Options{Pools: mcpPools{d}, Path: fc.MCPPath(), Tokens: tokens, Version: version, Logger: d.log, Observer: d.metrics})
	go func() {
		if err := d.mcp.Serve(ln); err != nil {
			d.fatal <- fmt.Errorf("mcp: %w", err)
		}
	}()
	d.log.Info("MCP front door open", "url", "http://"+ln.Addr().String()+fc.MCPPath(), "pools", "http://"+ln.Addr().String()+"/pools/{pool}/mcp", "tokens", len(tokens))
	return nil
}

func (d *daemon) stopMCP(ctx context.Context) {
	if d.closeLocalMCP != nil {
		d.closeLocalMCP()
	}
	if d.mcp != nil {
		d.mcp.Shutdown(ctx)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// mcpPools is the front door's view of the supervisor.
type mcpPools struct{ d *daemon }

// List shows each pool of the running config: a native pool as itself, an
// MCP pool as the tools its servers listed at their latest handshake (a
// pool of one tool is shown by its configured name until one has).
func (m mcpPools) List() []mcp.Pool {
	cfg := m.d.cfg.Load()
	out := make([]mcp.Pool, 0, len(cfg.Pools))
	for _, p := range cfg.Pools {
		if p.Protocol != config.ProtocolMCP {
			out = append(out, mcp.Pool{Name: p.Name, InputSchema: p.InputSchema, OutputSchema: p.Contract.Schema})
			continue
		}
		listed, _ := m.d.sup.Tools(p.Name)
		mp := mcp.Pool{Name: p.Name, Every: p.Tool == "*"}
		for _, t := range listed {
			if mp.Every || t.Name == p.Tool {
				mp.Tools = append(mp.Tools, mcp.Tool{Name: t.Name, Title: t.Title, Description: t.Description, InputSchema: t.InputSchema, OutputSchema: t.OutputSchema, Annotations: t.Annotations})
			}
		}
		if len(mp.Tools) == 0 {
			if mp.Every {
				continue // nothing known yet
			}
			mp.Tools = []mcp.Tool{{Name: p.Tool}}
		}
		out = append(out, mp)
	}
	return out
}

// Call is the supervisor's call path, as the unix socket API's calls take
// it. A call that cost more than one attempt, or failed, is logged with
// ctx: the MCP client's trace context (tracectx) marks those lines.
func (m mcpPools) Call(ctx context.Context, c mcp.Call) (json.RawMessage, error) {
	res, err := m.d.caller().Call(ctx, c.Pool, supervisor.CallRequest{Input: c.Input, Session: c.Session, Progress: c.Progress})
	if err != nil {
		if ctx.Err() == nil {
			m.d.log.InfoContext(ctx, "MCP call failed", "pool", c.Pool, "session", c.Session, "err", err)
		}
		return nil, err
	}
	if res.Attempts > 1 {
		m.d.log.InfoContext(ctx, "MCP call retried", "pool", c.Pool, "session", c.Session, "attempts", res.Attempts, "agent", res.Agent, "violations", len(res.Violations))
	}
	return res.Output, nil
}
