// Sluice as the MCP authorization server, as an MCP client meets it: the SDK's OAuth client gets
// Sluice's 401, reads the protected-resource metadata (Sluice first), registers (RFC 7591, or a
// Client ID Metadata Document when CIMD_CERT/CIMD_KEY are given: served here over https), and
// sends the person to /oauth2/authorize. This script plays the person's browser: Sluice sends it
// to the company IdP (oidc-provider's login and consent pages, LOGIN), back to Sluice's consent
// page (Allow), and to the redirect URI with the code. Then tools are listed and TOOL is called;
// when the person's upstream account is not connected yet, the connect link Sluice answers with
// is opened in the same browser (signed in already) and the tool called again. Last, a refresh
// rotates the refresh token and the old one, presented again, ends the family.
// Usage: node signin-client.mjs URL   Prints one JSON object (see `out` below).
import https from 'node:https';
import fs from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError, auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { go } from './browser.mjs';

const [url] = process.argv.slice(2);
const login = process.env.LOGIN || 'alice';
const tool = process.env.TOOL || 'whoami';
const REDIRECT = 'http://127.0.0.1:9/callback';
const state = { client: undefined, tokens: undefined, verifier: undefined, authUrl: undefined };
const out = { pages: [] };

// A Client ID Metadata Document, served over https at an ephemeral port.
let metadataUrl;
if (process.env.CIMD_CERT) {
  const server = https.createServer({ cert: fs.readFileSync(process.env.CIMD_CERT), key: fs.readFileSync(process.env.CIMD_KEY) }, (req, res) => {
    out.cimd_fetches = (out.cimd_fetches || 0) + 1;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({
      client_id: metadataUrl, client_name: 'sluice-test-cimd-client', redirect_uris: [REDIRECT],
      grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none',
    }));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  metadataUrl = `https://127.0.0.1:${server.address().port}/client.json`;
  server.unref();
}

const provider = {
  get redirectUrl() { return REDIRECT; },
  get clientMetadata() {
    return {
      redirect_uris: [REDIRECT],
      client_name: 'sluice-test-mcp-client',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  },
  clientMetadataUrl: metadataUrl,
  clientInformation: () => state.client,
  saveClientInformation: (info) => { state.client = info; },
  tokens: () => state.tokens,
  saveTokens: (t) => { state.tokens = t; },
  redirectToAuthorization: (u) => { state.authUrl = u; },
  saveCodeVerifier: (v) => { state.verifier = v; },
  codeVerifier: () => state.verifier,
};

const hidden = (html) => Object.fromEntries([...html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1], m[2]]));

// Follows `start` through Sluice and the IdP until `done(url)` says it arrived; returns that URL.
async function browse(start, done) {
  let target = start.toString();
  let form;
  for (let i = 0; i < 16; i += 1) {
    if (done(target)) return target;
    const r = await go(target, form);
    form = undefined;
    if (r.status >= 300 && r.status < 400) {
      target = new URL(r.headers.get('location'), target).toString();
      continue;
    }
    const html = await r.text();
    const action = html.match(/action="([^"]+)"/);
    if (!action) {
      if (done(target, html)) return target;
      throw new Error(`no form at ${target}: ${r.status} ${html.slice(0, 400)}`);
    }
    const who = html.match(/id="identity">([^<]*)</);
    out.pages.push({ at: new URL(target).pathname, identity: who ? who[1] : undefined });
    target = new URL(action[1], target).toString();
    if (html.includes('name="decision"')) form = { ...hidden(html), decision: 'allow' };
    else if (html.includes('name="link"')) form = hidden(html);
    else if (html.includes('name="login"')) form = { prompt: 'login', login, password: 'x' };
    else form = { prompt: 'consent' };
  }
  throw new Error(`the browser did not arrive from ${start}`);
}

const payload = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
const text = (result) => (result.content || []).map((c) => c.text || '').join('');

async function callTool(client) {
  try {
    return { result: await client.callTool({ name: tool, arguments: {} }) };
  } catch (e) {
    return { error: e };
  }
}

try {
  const started = Date.now();
  const first = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  try {
    await new Client({ name: 'sluice-test', version: '1.0.0' }).connect(first);
    throw new Error('connected without authorization');
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  out.discovered = {
    authorization: state.authUrl?.origin,
    resource: state.authUrl?.searchParams.get('resource'),
    client_id: state.authUrl?.searchParams.get('client_id'),
  };
  const redirected = await browse(state.authUrl, (t) => t.startsWith(REDIRECT));
  const back = new URL(redirected).searchParams;
  out.redirect = { iss: back.get('iss'), state_returned: back.get('state') === state.authUrl.searchParams.get('state') };
  await first.finishAuth(back.get('code'));
  const claims = payload(state.tokens.access_token);
  out.token = { aud: claims.aud, sub: claims.sub, idp: claims.sluice_idp, client_id: claims.client_id, scope: state.tokens.scope, expires_in: state.tokens.expires_in };
  out.access_token = state.tokens.access_token;
  // Without the person's upstream grant the server answers `initialize` with the link to
  // connect (URL elicitation): opened in this same browser, already signed in.
  const connect = async () => {
    const c = new Client({ name: 'sluice-test', version: '1.0.0' }, { capabilities: { elicitation: { url: {} } } });
    await c.connect(new StreamableHTTPClientTransport(new URL(url), { authProvider: provider }));
    return c;
  };
  let client;
  try {
    client = await connect();
  } catch (e) {
    const link = e?.data?.elicitations?.[0]?.url;
    if (!link) throw e;
    out.connect_link = true;
    await browse(link, (t, html) => t.includes('/oauth/v1/callback') && html !== undefined);
    client = await connect();
  }
  out.tools = (await client.listTools()).tools.map((t) => t.name);
  out.signin_ms = Date.now() - started;
  const call = await callTool(client);
  out.tool_result = call.result ? text(call.result) : `error: ${call.error}`;
  await client.close();

  // Refresh: the SDK refreshes with the refresh token it holds; the old one then ends the family.
  const before = state.tokens.refresh_token;
  const outcome = await auth(provider, { serverUrl: new URL(url) });
  out.refreshed = outcome === 'AUTHORIZED' && state.tokens.refresh_token !== before;
  const tokenUrl = new URL('/oauth2/token', state.authUrl).toString();
  const refresh = (token) => fetch(tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: token, client_id: state.client.client_id }).toString(),
  });
  const replay = await refresh(before);
  out.replayed = { status: replay.status, error: (await replay.json()).error };
  const after = await refresh(state.tokens.refresh_token);
  out.after_replay = { status: after.status, error: (await after.json()).error };
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
}
process.stdout.write(`${JSON.stringify(out)}\n`);
process.exit(0);
