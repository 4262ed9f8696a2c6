// The e2e driver of `resilientctl mcp` (cmd/resilienced's tests): the
// official TypeScript client launches the relay with StdioClientTransport,
// as Claude Desktop or an IDE launches a stdio server, and runs the
// operations the test writes on stdin, one JSON object a line:
//   {"step": S, "op": "list"}
//   {"step": S, "op": "call", "name": TOOL, "arguments": {...}}
// It prints one JSON line per event: {"step": S, "sent": true} when a call
// is sent (so the test can kill its agent mid-call), then its result; at
// the end of stdin it closes the client (the relay's stdin) and prints
// {"step": "closed"}.
//
//   node stdio.mjs RESILIENTCTL SOCKET [POOL]
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import readline from "node:readline";

const [ctl, socket, pool] = process.argv.slice(2);
const out = (o) => console.log(JSON.stringify(o));
const text = (r) => (r.content || []).filter((c) => c.type === "text").map((c) => c.text).join("");

const args = ["--socket", socket, "mcp"];
if (pool) args.push("--pool", pool);
const transport = new StdioClientTransport({ command: ctl, args, stderr: "inherit" });
const client = new Client({ name: "resilienced-stdio-e2e", version: "1.0.0" });
await client.connect(transport);
out({ step: "connected", pid: transport.pid });

for await (const line of readline.createInterface({ input: process.stdin })) {
  const op = JSON.parse(line);
  try {
    if (op.op === "list") {
      const { tools } = await client.listTools();
      out({ step: op.step, tools: tools.map((t) => ({ name: t.name, inputSchema: t.inputSchema })) });
    } else if (op.op === "call") {
      out({ step: op.step, sent: true });
      const r = await client.callTool({ name: op.name, arguments: op.arguments }, undefined, { timeout: 60000 });
      out({ step: op.step, text: text(r), isError: !!r.isError, structured: r.structuredContent });
    }
  } catch (e) {
    out({ step: op.step, error: String(e.message || e), code: e.code });
  }
}
await client.close();
out({ step: "closed" });
