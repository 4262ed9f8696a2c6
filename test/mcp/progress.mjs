// The e2e driver of progress and cancellation through the MCP front door
// (cmd/resilienced's TestMCPProgressAndCancel): one client session of the
// official SDK calls server-everything's trigger-long-running-operation
// with onprogress, then calls it again and aborts it (AbortController,
// which sends notifications/cancelled) after two progress notifications,
// then calls echo. One JSON line per step.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const url = process.argv[2];
const out = (o) => console.log(JSON.stringify(o));
const text = (r) => (r.content || []).filter((c) => c.type === "text").map((c) => c.text).join("");

const transport = new StreamableHTTPClientTransport(new URL(url));
const client = new Client({ name: "resilienced-progress", version: "1.0.0" });
await client.connect(transport);

let progress = [];
let r = await client.callTool(
  { name: "trigger-long-running-operation", arguments: { duration: 2, steps: 4 } },
  undefined,
  { timeout: 60000, onprogress: (p) => progress.push(p) },
);
out({ step: "progress", session: transport.sessionId, text: text(r), isError: !!r.isError, progress });

progress = [];
const abort = new AbortController();
const started = Date.now();
try {
  r = await client.callTool(
    { name: "trigger-long-running-operation", arguments: { duration: 60, steps: 120 } },
    undefined,
    {
      timeout: 120000,
      signal: abort.signal,
      onprogress: (p) => {
        progress.push(p);
        if (progress.length === 2) abort.abort("the user changed their mind");
      },
    },
  );
  out({ step: "cancelled", session: transport.sessionId, text: text(r), isError: !!r.isError, progress, ms: Date.now() - started });
} catch (e) {
  out({ step: "cancelled", session: transport.sessionId, error: String(e), progress, ms: Date.now() - started });
}

r = await client.callTool({ name: "echo", arguments: { message: "after" } });
out({ step: "after", session: transport.sessionId, text: text(r), isError: !!r.isError });
await client.close();
process.exit(0);
