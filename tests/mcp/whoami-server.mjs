// An MCP server that checks who is calling: every request needs a bearer token, checked at the
// authorization server's userinfo endpoint (USERINFO_URL); the `whoami` tool returns the token's
// subject. Streamable HTTP on 127.0.0.1 (ephemeral port printed as {"port": N}); sessions are
// kept per transport. Test hook: GET /_test/seen lists the bearer tokens' subjects seen, and
// whether any request carried a credential other than the injected one.
import http from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { handleMcp } from './sessions.mjs';

const USERINFO = process.env.USERINFO_URL;
const seen = { subjects: [], tokens: [], other_credentials: 0 };

async function subjectOf(req) {
  const auth = req.headers.authorization || '';
  if (req.headers['x-api-key'] || req.headers['proxy-authorization']) seen.other_credentials += 1;
  if (!auth.startsWith('Bearer ')) return null;
  const token = auth.slice(7);
  const r = await fetch(USERINFO, { headers: { authorization: `Bearer ${token}` } });
  if (!r.ok) return null;
  seen.tokens.push(token);
  return (await r.json()).sub;
}

function newServer(subject) {
  const server = new McpServer({ name: 'whoami', version: '1.0.0' });
  // Without an input schema the SDK passes only `extra`.
  server.registerTool('whoami', { description: 'The subject of the bearer token this call carried' }, async (...args) => ({
    content: [{ type: 'text', text: args[args.length - 1]?.authInfo?.extra?.sub ?? subject }],
  }));
  return server;
}

const httpServer = http.createServer(async (req, res) => {
  try {
    if (req.url === '/_test/seen') {
      res.setHeader('content-type', 'application/json');
      return res.end(JSON.stringify(seen));
    }
    const sub = await subjectOf(req);
    if (!sub) {
      res.statusCode = 401;
      res.setHeader('www-authenticate', 'Bearer realm="whoami-upstream"');
      return res.end(JSON.stringify({ error: 'invalid_token' }));
    }
    seen.subjects.push(sub);
    req.auth = { token: 'x', clientId: 'x', scopes: [], extra: { sub } };
    await handleMcp(req, res, () => newServer(sub));
  } catch (e) {
    res.statusCode = 500;
    res.end(String(e));
  }
});

process.stdout.on('error', () => {});
httpServer.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: httpServer.address().port })}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    httpServer.closeAllConnections();
    httpServer.close(() => process.exit(0));
  });
}
