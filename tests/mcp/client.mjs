// An MCP client for Sluice's tests: the official SDK's Client over StreamableHTTPClientTransport.
// Usage: node client.mjs URL SCRIPT   (SCRIPT: JSON list of steps; the credential comes from
// MCP_TOKEN and goes in Authorization: Bearer). Prints one JSON object with what each step saw,
// timestamps in ms since the start, and never throws past main (errors are reported as data).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url, script] = process.argv.slice(2);
const steps = JSON.parse(script || '["init","list","echo"]');
const started = Date.now();
const at = () => Date.now() - started;
const headers = {};
if (process.env.MCP_TOKEN) headers.Authorization = `Bearer ${process.env.MCP_TOKEN}`;
if (process.env.MCP_SESSION) headers['mcp-session-id'] = process.env.MCP_SESSION;
const capabilities = process.env.MCP_URL_ELICITATION ? { elicitation: { url: {} } } : {};
const out = { steps: [] };

const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: 'sluice-test', version: '1.0.0' }, { capabilities });

async function step(name) {
  switch (name) {
    case 'init':
      await client.connect(transport);
      return { sessionId: transport.sessionId, server: client.getServerVersion()?.name };
    case 'list':
      return { tools: (await client.listTools()).tools.map((t) => t.name) };
    case 'echo':
      return { result: await client.callTool({ name: 'echo', arguments: { message: 'hello through sluice' } }) };
    case 'whoami':
      return { result: await client.callTool({ name: 'whoami', arguments: {} }) };
    case 'whoami10': {
      const calls = Array.from({ length: 10 }, () => client.callTool({ name: 'whoami', arguments: {} }));
      return { results: await Promise.all(calls) };
    }
    case 'long': {
      const progress = [];
      const result = await client.callTool(
        { name: 'trigger-long-running-operation', arguments: { duration: 2, steps: 4 } },
        undefined,
        { onprogress: (p) => progress.push({ at: at(), progress: p.progress }), timeout: 60000 },
      );
      return { progress, result, result_at: at() };
    }
    case 'delete':
      await transport.terminateSession();
      return { terminated: true };
    default:
      throw new Error(`unknown step ${name}`);
  }
}

for (const name of steps) {
  try {
    out.steps.push({ step: name, at: at(), ...(await step(name)) });
  } catch (e) {
    out.steps.push({ step: name, at: at(), error: String(e && e.message ? e.message : e), code: e && e.code });
    break;
  }
}
out.sessionId = transport.sessionId;
process.stdout.write(`${JSON.stringify(out)}\n`);
await client.close().catch(() => {});
process.exit(0);
