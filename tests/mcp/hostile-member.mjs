// A misbehaving MCP server, for groups' tests (Streamable HTTP on 127.0.0.1, port printed as
// {"port": N}). MODE=loop: answers `initialize`, and every `tools/list` page with a tool and
// the same `nextCursor` again (a list that never ends). MODE=hang: never answers anything.
import http from 'node:http';

const mode = process.env.MODE || 'loop';
const server = http.createServer(async (req, res) => {
  let data = '';
  for await (const chunk of req) data += chunk;
  if (mode === 'hang') return; // the socket stays open, unanswered
  const msg = data ? JSON.parse(data) : {};
  if (!('id' in msg)) {
    res.statusCode = 202;
    return res.end();
  }
  res.setHeader('content-type', 'application/json');
  res.setHeader('mcp-session-id', 'hostile-session');
  const result = msg.method === 'initialize'
    ? { protocolVersion: '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'hostile', version: '1' } }
    : { tools: [{ name: `again-${Math.random().toString(36).slice(2, 8)}`, inputSchema: { type: 'object' } }], nextCursor: 'again' };
  return res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result }));
});
process.stdout.on('error', () => {});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
