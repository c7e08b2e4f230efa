// Idle MCP GET streams for benches/mcp.sh. Two roles:
//   node idle-streams.mjs upstream      an upstream that opens a session on any POST and holds
//                                       every GET as an SSE stream that never sends (port on stdout)
//   node idle-streams.mjs open URL N    opens N sessions through URL (initialize, then the GET
//                                       stream) and holds them; prints {"open": N} when done, then
//                                       waits to be killed
import http from 'node:http';
import { randomUUID } from 'node:crypto';

const [role, url, n] = process.argv.slice(2);
process.stdout.on('error', () => {});

if (role === 'upstream') {
  const server = http.createServer((req, res) => {
    if (req.method === 'POST') {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': randomUUID() });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { protocolVersion: '2025-11-25', capabilities: {}, serverInfo: { name: 'idle', version: '1' } } }));
      });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
  });
  server.keepAliveTimeout = 0;
  server.headersTimeout = 0;
  server.requestTimeout = 0;
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`));
} else {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const target = new URL(url);
  const request = (method, headers, body) => new Promise((resolve, reject) => {
    const req = http.request({ host: target.hostname, port: target.port, path: target.pathname, method, headers, agent }, resolve);
    req.on('error', reject);
    req.end(body);
  });
  const auth = { authorization: `Bearer ${process.env.MCP_TOKEN}` };
  const streams = [];
  const init = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'idle', version: '1' } } });
  for (let i = 0; i < Number(n); i += 64) {
    const batch = [];
    for (let j = i; j < Math.min(Number(n), i + 64); j += 1) {
      batch.push((async () => {
        const r = await request('POST', { ...auth, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, init);
        const session = r.headers['mcp-session-id'];
        r.resume();
        await new Promise((ok) => r.on('end', ok));
        const g = await request('GET', { ...auth, accept: 'text/event-stream', 'mcp-session-id': session, connection: 'keep-alive' });
        if (g.statusCode !== 200) throw new Error(`GET ${g.statusCode}`);
        streams.push(g);
      })());
    }
    await Promise.all(batch);
  }
  process.stdout.write(`${JSON.stringify({ open: streams.length })}\n`);
  setInterval(() => {}, 1 << 30);
}
