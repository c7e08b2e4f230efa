// A real OpenID Provider for Sluice's tests: oidc-provider issuing client_credentials access
// tokens as JWTs (client `rs-client` gets RS256, `es-client` ES256), on 127.0.0.1 with an
// ephemeral port printed as {"port": N}. Test hooks (never part of a real IdP):
//   GET  /_test/stats   -> {"jwks": <JWKS fetches>}
//   POST /_test/rotate  -> new RSA and EC keys first, old keys kept (key rotation)
//   POST /_test/retire  -> only the newest RSA and EC keys kept (the end of a rotation)
//   POST /_test/mint    -> signs arbitrary claims with the current keys, to build tokens the
//                          provider would never issue (expired, not yet valid, wrong audience,
//                          HS256 keyed with the RSA public key)
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';
import { SignJWT, importJWK } from 'jose';

const AUDIENCE = process.env.IDP_AUDIENCE || 'urn:sluice:gateway';
const stats = { jwks: 0 };
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
    scopes: ['llm.invoke', 'admin'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => AUDIENCE,
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
  });
  return provider;
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
