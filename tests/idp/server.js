// A real OpenID Provider for Sluice's tests: oidc-provider issuing client_credentials access
// tokens as JWTs (client `rs-client` gets RS256, `es-client` ES256), on 127.0.0.1 with an
// ephemeral port printed as {"port": N}. Test hooks (never part of a real IdP):
//   GET  /_test/stats   -> {"jwks": <JWKS fetches>}
//   POST /_test/rotate  -> new RSA and EC keys first, old keys kept (key rotation)
//   POST /_test/retire  -> only the newest RSA and EC keys kept (the end of a rotation)
//   POST /_test/mint    -> signs arbitrary claims with the current keys, to build tokens the
//                          provider would never issue (expired, not yet valid, wrong audience,
//                          HS256 keyed with the RSA public key)
//   POST /_test/ttl     -> {"access": seconds}: lifetime of the access tokens issued from now on
//   POST /_test/exchange_token_type -> {"token_type": "DPoP"}: what token exchanges answer with
//   (/_test/stats counts the token-exchange requests received, valid or not: exchanges_received)
//   (/_test/stats also lists the user tokens issued, so tests can look for them where they must not be)
// At sign-in (authorization code with `openid`), only alice is granted the `admin` scope.
// As an upstream authorization server (Sluice as its OAuth client): dynamic client registration
// (POST /reg), authorization code + PKCE with the development login/consent pages (any login,
// any password), refresh tokens rotated on every use, RFC 7009 revocation, and an RFC 8693
// token-exchange grant that accepts a subject JWT this provider signed. /_test/stats also
// counts successful grants by type and revocations.
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';
import { SignJWT, importJWK, jwtVerify, createLocalJWKSet } from 'jose';

const AUDIENCE = process.env.IDP_AUDIENCE || 'urn:sluice:gateway';
const stats = { jwks: 0, grants: {}, revocations: 0, revoked: [], issued: [], exchanges_received: 0 };
// The token_type the token-exchange grant answers with (POST /_test/exchange_token_type).
let exchangeTokenType = 'Bearer';
const CC_CLIENTS = new Set(['rs-client', 'es-client']);
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
let accessTtl = 3600;
let keys = [];

function newKeys() {
  const tag = crypto.randomBytes(6).toString('hex');
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return [
    { ...rsa, kid: `rsa-${tag}`, alg: 'RS256', use: 'sig' },
    { ...ec, kid: `ec-${tag}`, alg: 'ES256', use: 'sig' },
  ];
}

function makeProvider(issuer) {
  const client = (id) => ({
    client_id: id,
    client_secret: `${id}-secret`,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_post',
  });
  const provider = new Provider(issuer, {
    clients: [client('rs-client'), client('es-client')],
    jwks: { keys },
    scopes: ['openid', 'offline_access', 'groups', 'llm.invoke', 'admin', 'repo.read', 'repo.write'],
    // `groups` (scope `groups`, in the ID token too): alice is in sluice-admins, logins starting
    // with `view` in sluice-viewers, everyone in staff.
    claims: { openid: ['sub'], groups: ['groups'] },
    conformIdTokenClaims: false,
    findAccount: (ctx, id) => ({
      accountId: id,
      claims: () => ({
        sub: id,
        groups: [...(id === 'alice' ? ['sluice-admins'] : []), ...(id.startsWith('view') ? ['sluice-viewers'] : []), 'staff'],
      }),
    }),
    ttl: {
      AccessToken: () => accessTtl,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
      RefreshToken: 86400,
      AuthorizationCode: 60,
      IdToken: 3600,
    },
    rotateRefreshToken: true,
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    pkce: { required: (ctx, client) => client.tokenEndpointAuthMethod === 'none' },
    features: {
      devInteractions: { enabled: true },
      registration: { enabled: true },
      clientCredentials: { enabled: true },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (ctx, client) => (client && CC_CLIENTS.has(client.clientId) ? AUDIENCE : undefined),
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource, client) => ({
          scope: 'llm.invoke admin',
          audience: resource,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 300,
          jwt: { sign: { alg: client.clientId === 'es-client' ? 'ES256' : 'RS256' } },
        }),
      },
    },
  });
  provider.use(async (ctx, next) => {
    if (ctx.path === '/jwks') stats.jwks += 1;
    await next();
    if (ctx.path === '/token' && ctx.status === 200 && ctx.oidc && ctx.oidc.params) {
      const type = ctx.oidc.params.grant_type;
      stats.grants[type] = (stats.grants[type] || 0) + 1;
      if (type !== 'client_credentials' && ctx.body) {
        stats.issued.push({ grant_type: type, access_token: ctx.body.access_token, refresh_token: ctx.body.refresh_token });
      }
      // Entitlement, as a company IdP decides it: only alice holds `admin` when she signs in.
      if (type === 'authorization_code' && ctx.body && ctx.body.id_token && typeof ctx.body.scope === 'string') {
        const sub = JSON.parse(Buffer.from(ctx.body.id_token.split('.')[1], 'base64url').toString()).sub;
        if (sub !== 'alice') ctx.body.scope = ctx.body.scope.split(' ').filter((x) => x !== 'admin').join(' ');
      }
    }
    if (ctx.path === '/token/revocation' && ctx.status === 200 && ctx.oidc && ctx.oidc.params) {
      stats.revocations += 1;
      stats.revoked.push(ctx.oidc.params.token_type_hint || '');
    }
  });
  provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange(provider), [
    'subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope',
  ]);
  return provider;
}

// RFC 8693: the subject token must be a JWT this provider signed and that has not expired; the
// issued access token is for the subject's `sub`, with the requested scopes.
function tokenExchange(provider) {
  return async (ctx) => {
    const { params, client } = ctx.oidc;
    stats.exchanges_received += 1;
    const fail = (error, description) => {
      ctx.status = 400;
      ctx.body = { error, error_description: description };
    };
    if (params.subject_token_type !== 'urn:ietf:params:oauth:token-type:jwt'
      && params.subject_token_type !== 'urn:ietf:params:oauth:token-type:access_token') {
      return fail('invalid_request', 'unsupported subject_token_type');
    }
    let claims;
    try {
      const jwks = createLocalJWKSet({ keys: keys.map(({ d, p, q, dp, dq, qi, ...pub }) => pub) });
      ({ payload: claims } = await jwtVerify(params.subject_token, jwks, { issuer: provider.issuer }));
    } catch (e) {
      return fail('invalid_grant', `subject_token: ${e.code || e.message}`);
    }
    const scope = (params.scope || '').split(' ').filter((s) => s && s !== 'offline_access').join(' ');
    const grant = new provider.Grant({ accountId: String(claims.sub), clientId: client.clientId });
    if (scope) grant.addOIDCScope(scope);
    const grantId = await grant.save();
    const token = new provider.AccessToken({
      accountId: String(claims.sub),
      client,
      grantId,
      scope: scope || undefined,
      gty: 'token_exchange',
    });
    const value = await token.save();
    ctx.body = {
      access_token: value,
      issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      token_type: exchangeTokenType,
      expires_in: token.expiration,
      scope: scope || undefined,
    };
  };
}

async function body(req) {
  let data = '';
  for await (const chunk of req) data += chunk;
  return data ? JSON.parse(data) : {};
}

async function mint({ alg = 'RS256', claims = {}, header = {}, hs256WithPublicKey = false, count = 0 }) {
  if (count > 0) {
    // Many tokens, each naming a random (unknown) kid.
    const out = [];
    for (let i = 0; i < count; i += 1) {
      out.push(await mint({ alg, claims, header: { ...header, kid: `unknown-${crypto.randomBytes(8).toString('hex')}` } }));
    }
    return out;
  }
  if (hs256WithPublicKey) {
    // Algorithm confusion: HMAC keyed with the RSA public key's PEM, kid of the RSA key.
    const rsa = keys.find((k) => k.kty === 'RSA');
    const pub = crypto.createPublicKey({ key: rsa, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
    return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: rsa.kid, ...header })
      .sign(new TextEncoder().encode(pub));
  }
  const jwk = keys.find((k) => k.alg === alg);
  const key = await importJWK(jwk, alg);
  return new SignJWT(claims).setProtectedHeader({ alg, kid: jwk.kid, typ: 'at+jwt', ...header }).sign(key);
}

// The test reads the first line (the port) and then closes the pipe: later notices printed by
// oidc-provider must not kill the process with EPIPE.
process.stdout.on('error', () => {});
keys = newKeys();
let provider;
const server = http.createServer(async (req, res) => {
  try {
    if (req.url === '/_test/stats') {
      res.setHeader('content-type', 'application/json');
      return res.end(JSON.stringify(stats));
    }
    if (req.url === '/_test/rotate' && req.method === 'POST') {
      keys = [...newKeys(), ...keys];
      provider = makeProvider(provider.issuer);
      res.setHeader('content-type', 'application/json');
      return res.end(JSON.stringify({ kids: keys.map((k) => k.kid) }));
    }
    if (req.url === '/_test/retire' && req.method === 'POST') {
      keys = keys.slice(0, 2);
      provider = makeProvider(provider.issuer);
      res.setHeader('content-type', 'application/json');
      return res.end(JSON.stringify({ kids: keys.map((k) => k.kid) }));
    }
    if (req.url === '/_test/ttl' && req.method === 'POST') {
      accessTtl = (await body(req)).access;
      res.setHeader('content-type', 'application/json');
      return res.end(JSON.stringify({ access: accessTtl }));
    }
    if (req.url === '/_test/exchange_token_type' && req.method === 'POST') {
      exchangeTokenType = (await body(req)).token_type;
      res.setHeader('content-type', 'application/json');
      return res.end(JSON.stringify({ token_type: exchangeTokenType }));
    }
    if (req.url === '/_test/mint' && req.method === 'POST') {
      const minted = await mint(await body(req));
      res.setHeader('content-type', 'application/json');
      return res.end(JSON.stringify(Array.isArray(minted) ? { tokens: minted } : { token: minted }));
    }
    return provider.callback()(req, res);
  } catch (e) {
    res.statusCode = 500;
    res.end(String(e));
  }
});

server.listen(Number(process.env.IDP_PORT || 0), '127.0.0.1', () => {
  const { port } = server.address();
  provider = makeProvider(`http://127.0.0.1:${port}`);
  process.stdout.write(`${JSON.stringify({ port })}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
