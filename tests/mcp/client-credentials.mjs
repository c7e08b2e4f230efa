// Machine-to-machine MCP through Sluice as the SDK does it: the official client with the SDK's
// ClientCredentialsProvider (client_secret_basic) meets Sluice's 401 on an agent environment,
// follows `resource_metadata` to the protected-resource metadata, finds Sluice's issuer there,
// reads its RFC 8414 metadata, gets a client_credentials token for the resource (RFC 8707) and
// retries; then lists the tools and calls `echo`.
// Usage: MCP_CLIENT_ID=… MCP_CLIENT_SECRET=… MCP_EXPECTED_ISSUER=… node client-credentials.mjs URL
// Prints {"fetched": ["METHOD path status", …], "tools": […], "echo": "…", "token": "…"} or {"error": …}.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';

const [url] = process.argv.slice(2);
const fetched = [];
const logged = async (input, init) => {
  const r = await fetch(input, init);
  const u = new URL(input instanceof Request ? input.url : input);
  fetched.push(`${init?.method || 'GET'} ${u.pathname} ${r.status}`);
  return r;
};

const provider = new ClientCredentialsProvider({
  clientId: process.env.MCP_CLIENT_ID,
  clientSecret: process.env.MCP_CLIENT_SECRET,
  expectedIssuer: process.env.MCP_EXPECTED_ISSUER,
});
const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider, fetch: logged });
const client = new Client({ name: 'sluice-test-m2m', version: '1.0.0' });

try {
  await client.connect(transport);
  const tools = (await client.listTools()).tools.map((t) => t.name);
  const echo = await client.callTool({ name: 'echo', arguments: { message: 'machine to machine' } });
  await client.close();
  console.log(JSON.stringify({ fetched, tools, echo: echo.content?.[0]?.text, token: provider.tokens()?.access_token }));
} catch (e) {
  console.log(JSON.stringify({ fetched, error: String(e?.stack || e) }));
}
process.exit(0);
