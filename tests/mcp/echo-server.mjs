// An MCP test server of Sluice's own (Streamable HTTP on 127.0.0.1, port printed as {"port": N}):
// `echo` returns its text with the Authorization header the request carried (so a test sees
// which upstream credential Sluice injected), `slow` sends three progress notifications before
// its result, `announce` logs a message on the GET stream shortly after answering. Test hook: POST /_test/stop closes the server (a member going down mid-session).
import http from 'node:http';
import { z } from 'zod';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { handleMcp } from './sessions.mjs';

function newServer(authorization) {
  const server = new McpServer({ name: 'echo', version: '1.0.0' }, { capabilities: { logging: {} } });
  server.registerTool('echo', { description: 'Echoes its text and the credential it came with', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text: `${text} (${authorization || 'no credential'})` }] }));
  server.registerTool('slow', { description: 'Three progress notifications, then done' }, async (extra) => {
    const token = extra?._meta?.progressToken;
    for (let i = 1; i <= 3; i += 1) {
      if (token !== undefined) {
        await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: i, total: 3 } });
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return { content: [{ type: 'text', text: 'done' }] };
  });
  // A notification on the server-to-client (GET) stream, not on the call's answer.
  server.registerTool('announce', { description: 'Logs a message on the GET stream shortly after' }, async () => {
    setTimeout(() => server.sendLoggingMessage({ level: 'info', data: 'announced' }).catch(() => {}), 100);
    return { content: [{ type: 'text', text: 'will announce' }] };
  });
  server.registerPrompt('greet', { description: 'A greeting' }, async () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'hello' } }] }));
  return server;
}

const httpServer = http.createServer(async (req, res) => {
  try {
    if (req.url === '/_test/stop') {
      res.end('{}');
      httpServer.closeAllConnections();
      httpServer.close();
      return undefined;
    }
    await handleMcp(req, res, () => newServer(req.headers.authorization));
  } catch (e) {
    res.statusCode = 500;
    res.end(String(e));
  }
  return undefined;
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
