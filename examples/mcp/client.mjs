// A minimal MCP client of resilienced's front door, on the official
// TypeScript SDK: it lists the tools and calls one.
//
//   npm install @modelcontextprotocol/sdk
//   node client.mjs http://127.0.0.1:8765/mcp echo '{"message":"hello"}'
//
// Add a bearer token (mcp.tokens_file) with RESILIENT_MCP_TOKEN.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url = "http://127.0.0.1:8765/mcp", tool, args = "{}"] = process.argv.slice(2);
const headers = process.env.RESILIENT_MCP_TOKEN ? { Authorization: `Bearer ${process.env.RESILIENT_MCP_TOKEN}` } : {};
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: "resilienced-example", version: "1.0.0" });
await client.connect(transport);

const { tools } = await client.listTools();
console.log(JSON.stringify({ session: transport.sessionId, tools: tools.map((t) => t.name) }));
if (tool) {
  const result = await client.callTool({ name: tool, arguments: JSON.parse(args) });
  console.log(JSON.stringify(result));
}
await client.close();
