// Latency of MCP calls for benches/mcp.sh: N sequential `tools/call echo` on one session with the
// official SDK client. Usage: node bench.mjs URL N  (MCP_TOKEN for Authorization: Bearer; TOOL
// for another tool name, e.g. a group's `everything__echo`).
// Prints {"p50": ms, "p99": ms, "mean": ms} over the N calls (after 50 warm-up calls).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url, n = '1000'] = process.argv.slice(2);
const headers = process.env.MCP_TOKEN ? { Authorization: `Bearer ${process.env.MCP_TOKEN}` } : {};
const client = new Client({ name: 'sluice-bench', version: '1.0.0' });
await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
const tool = process.env.TOOL || 'echo';
const call = () => client.callTool({ name: tool, arguments: { message: 'bench' } });
for (let i = 0; i < 50; i += 1) await call();
const times = [];
for (let i = 0; i < Number(n); i += 1) {
  const t = process.hrtime.bigint();
  await call();
  times.push(Number(process.hrtime.bigint() - t) / 1e6);
}
times.sort((a, b) => a - b);
const q = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))];
const mean = times.reduce((a, b) => a + b, 0) / times.length;
process.stdout.write(`${JSON.stringify({ p50: q(0.5), p99: q(0.99), mean })}\n`);
await client.close();
process.exit(0);
