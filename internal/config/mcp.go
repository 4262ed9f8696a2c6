package config

import (
	"net"
	"strconv"
	"strings"
)

// MCPFront is the daemon's MCP front door (top-level `mcp:`): each pool
// served as MCP tools over Streamable HTTP. It is off unless Listen is set:
// a TCP port reaches every local user, where the unix socket checks peer
// credentials, so opening it is the operator's choice.
type MCPFront struct {
	// Listen is host:port, e.g. "127.0.0.1:8765"; "" keeps the front door shut.
	Listen string `yaml:"listen"`
	// Path is the aggregate endpoint (every pool's tools); each pool is
	// also at /pools/{pool}/mcp. Default DefaultMCPPath.
	Path string `yaml:"path"`
	// TokensFile, when set, holds the bearer tokens clients must present
	// (one per line; blank lines and #-comments ignored), read at start.
	TokensFile string `yaml:"tokens_file"`
}

// DefaultMCPPath is the aggregate MCP endpoint's path.
const DefaultMCPPath = "/mcp"

// MCPPath is the aggregate endpoint's path, the default applied.
func (m MCPFront) MCPPath() string {
	if m.Path == "" {
		return DefaultMCPPath
	}
	return m.Path
}

func (v *validator) mcpFront(m MCPFront) {
	if m.Listen != "" {
		if _, port, err := net.SplitHostPort(m.Listen); err != nil {
			v.errorf("mcp.listen", "%q is not host:port", m.Listen)
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			v.errorf("mcp.listen", "%q: port %q is not a number in 0..65535", m.Listen, port)
		}
	}
	if p := m.Path; p != "" && (!strings.HasPrefix(p, "/") || strings.HasPrefix(p, "/pools/") || strings.ContainsAny(p, " ?#{}")) {
		v.errorf("mcp.path", "%q is not an absolute URL path outside /pools/", p)
	}
	if (m.Path != "" || m.TokensFile != "") && m.Listen == "" {
		v.errorf("mcp.listen", "required when mcp.path or mcp.tokens_file is set: the front door is off without it")
	}
}
