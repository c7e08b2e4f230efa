// MCP authorization as a client does it: the SDK client meets Sluice's 401, discovers the
// protected-resource metadata and the authorization server from it, registers itself (RFC 7591),
// and sends the user to authorize; this script plays the user in oidc-provider's login and
// consent pages (LOGIN), hands the code back (finishAuth) and lists the tools on a new connection.
// Usage: node oauth-client.mjs URL   Prints {"discovered": …, "aud": …, "tools": N, "token": …}.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { go } from './browser.mjs';

const [url] = process.argv.slice(2);
const login = process.env.LOGIN || 'alice';
const REDIRECT = 'http://127.0.0.1:9/callback';
const state = { client: undefined, tokens: undefined, verifier: undefined, authUrl: undefined };

const provider = {
  get redirectUrl() { return REDIRECT; },
  get clientMetadata() {
    return {
      redirect_uris: [REDIRECT],
      client_name: 'sluice-test-mcp-client',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      // oidc-provider's development consent needs a scope to consent to.
      scope: 'openid',
    };
  },
  clientInformation: () => state.client,
  saveClientInformation: (info) => { state.client = info; },
  tokens: () => state.tokens,
  saveTokens: (t) => { state.tokens = t; },
  redirectToAuthorization: (u) => { state.authUrl = u; },
  saveCodeVerifier: (v) => { state.verifier = v; },
  codeVerifier: () => state.verifier,
};

async function consent(authUrl) {
  let target = authUrl.toString();
  let form;
  for (let i = 0; i < 12; i += 1) {
    if (target.startsWith(REDIRECT)) {
      const code = new URL(target).searchParams.get('code');
      if (!code) throw new Error(`the authorization server answered ${target}`);
      return code;
    }
    const r = await go(target, form);
    form = undefined;
    if (r.status >= 300 && r.status < 400) {
      target = new URL(r.headers.get('location'), target).toString();
      continue;
    }
    const html = await r.text();
    if (process.env.DEBUG) process.stderr.write(`PAGE ${target} ${r.status}\n${html.replace(/<style>[\s\S]*<\/style>/, '').slice(0, 1500)}\n`);
    const action = html.match(/action="([^"]+)"/);
    if (!action) throw new Error(`no form at ${target}: ${r.status} ${html.slice(0, 300)}`);
    target = new URL(action[1], target).toString();
    form = html.includes('name="login"') ? { prompt: 'login', login, password: 'x' } : { prompt: 'consent' };
  }
  throw new Error('consent did not reach the redirect');
}

const out = {};
try {
  const first = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  try {
    await new Client({ name: 'sluice-test', version: '1.0.0' }).connect(first);
    throw new Error('connected without authorization');
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  out.discovered = { authorization: state.authUrl?.origin, resource: state.authUrl?.searchParams.get('resource') };
  const code = await consent(state.authUrl);
  await first.finishAuth(code);
  const payload = JSON.parse(Buffer.from(state.tokens.access_token.split('.')[1], 'base64url').toString());
  out.aud = payload.aud;
  const client = new Client({ name: 'sluice-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { authProvider: provider }));
  out.tools = (await client.listTools()).tools.length;
  out.token = state.tokens.access_token;
  await client.close();
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
}
process.stdout.write(`${JSON.stringify(out)}\n`);
process.exit(0);
