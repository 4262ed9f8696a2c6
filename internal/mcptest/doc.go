// Package mcptest gives tests the real MCP packages from npm: the
// reference servers (@modelcontextprotocol/server-everything, -memory,
// -filesystem) that pools supervise, and the official TypeScript SDK
// (@modelcontextprotocol/sdk) whose client talks to the daemon's MCP front
// door. They are pinned in test/mcp/package.json and its lock file.
//
// [Modules] finds test/mcp/node_modules, installing it with `npm ci` on
// first use (one install at a time across test binaries, under a file
// lock); a test that needs them is skipped, with the reason, when node or
// npm is missing or the install fails (no network). CI installs them
// beforehand (.ci/run), so there they never skip.
package mcptest
