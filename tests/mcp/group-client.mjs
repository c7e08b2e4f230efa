// An MCP group through Sluice as the official SDK client sees it: one endpoint, the members'
// tools namespaced, calls routed (progress notifications of a long tool arriving as they come),
// then a member stopped mid-session (STOP_URL): its tools gone, the other's still there.
// Usage: MCP_TOKEN=… STOP_URL=… node group-client.mjs URL   Prints one JSON object.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema, LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';

const [url] = process.argv.slice(2);
const headers = { Authorization: `Bearer ${process.env.MCP_TOKEN}` };
const out = {};
const text = (r) => (r.content || []).map((c) => c.text || '').join('');
try {
  const client = new Client({ name: 'sluice-group-test', version: '1.0.0' }, { capabilities: { elicitation: {} } });
  const elicited = [];
  client.setRequestHandler(ElicitRequestSchema, async (req) => {
    elicited.push(req.params.message);
    return { action: 'decline' };
  });
  const logged = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => logged.push(n.params.data));
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  await client.connect(transport);
  out.server = client.getServerVersion()?.name;
  out.session = Boolean(transport.sessionId);
  out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
  out.prompts = (await client.listPrompts()).prompts.map((p) => p.name).sort();
  out.echo = text(await client.callTool({ name: 'echo__echo', arguments: { text: 'hi' } }));
  out.everything_echo = text(await client.callTool({ name: 'everything__echo', arguments: { message: 'yo' } }));
  const progress = [];
  const started = Date.now();
  out.slow = text(await client.callTool({ name: 'echo__slow', arguments: {} }, undefined, {
    onprogress: (p) => progress.push([p.progress, Date.now() - started]),
  }));
  out.progress = progress;
  // A member's notification on its own GET stream reaches the client through the group's.
  await client.callTool({ name: 'echo__announce', arguments: {} });
  for (let i = 0; i < 100 && !logged.includes('announced'); i += 1) await new Promise((r) => setTimeout(r, 50));
  out.announced = logged.includes('announced');
  // A member's own request to the user (elicitation) reaches the client, and the answer goes
  // back to that member.
  out.elicit = text(await client.callTool({ name: 'everything__trigger-elicitation-request', arguments: {} }));
  out.elicited = elicited.length;
  try {
    await client.callTool({ name: 'nobody__x', arguments: {} });
  } catch (e) { out.unknown = e.code; }
  try {
    out.refused = text(await client.callTool({ name: 'everything__get-env', arguments: {} }));
  } catch (e) { out.refused_code = e.code; }
  await fetch(process.env.STOP_URL, { method: 'POST' });
  out.tools_after_stop = (await client.listTools()).tools.map((t) => t.name).sort();
  try {
    await client.callTool({ name: 'echo__echo', arguments: { text: 'again' } });
  } catch (e) { out.stopped_call = e.code; }
  out.everything_after_stop = text(await client.callTool({ name: 'everything__echo', arguments: { message: 'still' } }));
  await transport.terminateSession();
  await client.close();
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
}
process.stdout.write(`${JSON.stringify(out)}\n`);
process.exit(0);
