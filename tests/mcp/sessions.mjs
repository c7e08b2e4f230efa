// Streamable HTTP with a session per client, for the test MCP servers: the body read, an
// unknown session answered 404, a new server made (by `newServer`) for each `initialize`.
import { randomUUID } from 'node:crypto';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';

const transports = new Map();

export async function handleMcp(req, res, newServer) {
  let body;
  if (req.method === 'POST') {
    let data = '';
    for await (const chunk of req) data += chunk;
    body = data ? JSON.parse(data) : undefined;
  }
  const id = req.headers['mcp-session-id'];
  let transport = id && transports.get(id);
  if (!transport) {
    if (id) {
      res.statusCode = 404;
      return res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } }));
    }
    transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (sid) => transports.set(sid, transport),
    });
    await newServer().connect(transport);
  }
  return transport.handleRequest(req, res, body);
}
