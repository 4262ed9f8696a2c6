// The e2e driver of the MCP front door (cmd/resilienced's tests): one
// client session through which the steps below run; it prints one JSON
// line per step, and before the step "long" it waits for a line on stdin,
// so the test can kill the agent at work in the middle of that call.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import readline from "node:readline";

const url = process.argv[2];
const out = (o) => console.log(JSON.stringify(o));
const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const text = (r) => (r.content || []).filter((c) => c.type === "text").map((c) => c.text).join("");

const transport = new StreamableHTTPClientTransport(new URL(url));
const client = new Client({ name: "resilienced-e2e", version: "1.0.0" });
await client.connect(transport);
const { tools } = await client.listTools();
out({ step: "tools", session: transport.sessionId, tools: tools.map((t) => t.name).sort() });

let r = await client.callTool({ name: "ev.echo", arguments: { message: "hello" } });
out({ step: "echo", session: transport.sessionId, text: text(r), isError: !!r.isError });

r = await client.callTool({ name: "ev.echo", arguments: { msg: "hello" } });
out({ step: "bad-args", session: transport.sessionId, text: text(r), isError: !!r.isError });

out({ step: "ready-long" });
await lines.next(); // the test says go
const started = Date.now();
const progress = [];
const long = client.callTool(
  { name: "trigger-long-running-operation", arguments: { duration: 4, steps: 4 } },
  undefined,
  { timeout: 60000, onprogress: (p) => progress.push(p.progress) },
);
out({ step: "calling-long" });
r = await long;
out({ step: "long", session: transport.sessionId, text: text(r), isError: !!r.isError, ms: Date.now() - started, progress });

r = await client.callTool({ name: "ev.echo", arguments: { message: "after" } });
out({ step: "after", session: transport.sessionId, text: text(r), isError: !!r.isError });
await client.close();
process.exit(0);
