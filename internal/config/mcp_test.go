package config

import (
	"strings"
	"testing"
)

func TestMCPFrontDoor(t *testing.T) {
	c, err := Parse("t.yaml", []byte("mcp: {listen: \"127.0.0.1:8765\", tokens_file: /etc/t}\npools: [{name: a, command: [x]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.MCP.Listen != "127.0.0.1:8765" || c.MCP.MCPPath() != "/mcp" || c.MCP.TokensFile != "/etc/t" {
		t.Fatalf("got %+v", c.MCP)
	}
	if c, _ := Parse("t.yaml", []byte("pools: [{name: a, command: [x]}]\n")); c.MCP.Listen != "" {
		t.Fatal("the front door must be off by default")
	}
	for in, want := range map[string]string{
		"mcp: {listen: localhost}":                      `t.yaml:1:15: mcp.listen: "localhost" is not host:port`,
		"mcp: {listen: \"127.0.0.1:x\"}":                `mcp.listen: "127.0.0.1:x": port "x" is not a number in 0..65535`,
		"mcp: {listen: \"127.0.0.1:1\", path: mcp}":     `mcp.path: "mcp" is not an absolute URL path outside /pools/`,
		"mcp: {listen: \"127.0.0.1:1\", path: /pools/}": `mcp.path: "/pools/" is not an absolute URL path outside /pools/`,
		"mcp: {path: /x}":                               `mcp.listen: required when mcp.path or mcp.tokens_file is set`,
		"mcp: {listn: x}":                               `listn`,
	} {
		_, err := Parse("t.yaml", []byte(in+"\npools: [{name: a, command: [x]}]\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", in, err, want)
		}
	}
}
