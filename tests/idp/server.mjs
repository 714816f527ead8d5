// The real OpenID provider the integration tests run against: oidc-provider configured like an Okta
// custom authorization server ("default"), on loopback, with per-endpoint request counters.
//
//   node tests/idp/server.mjs ['{"clients":[{"client_id","client_secret","scope"}],"accessTokenTtl":3600,"accessTokenFormat":"opaque"|"jwt","jwksMaxAge":N,"mint":true}']
//
// Prints exactly one line to stdout once listening: {"issuer":"http://127.0.0.1:PORT/oauth2/default","port":PORT}.
// Test controls outside the issuer path (not counted): GET /__stats (request counters by endpoint),
// POST /__rotate (a new signing key; answers {"kid":"<new kid>"}). With "mint": true (and only then,
// so the default provider's metadata and grants stay as they are), POST /__mint?kind=refresh_token or
// ?kind=id_token&access_token=<token> (&client_id=, default orders-app) issues that token the way a
// code flow would, which client_credentials never does (answers {"token":"..."}); refresh tokens are
// introspectable (the refresh_token grant is enabled for them).
// With "registration": true (and only then), dynamic client registration (RFC 7591) is enabled at
// <issuer>/v1/clients behind an initial access token ("initialAccessToken", default a fresh UUID,
// also printed in the ready line), accepted as `Bearer <iat>` or, like Okta's API token,
// `SSWS <iat>`; registered clients are managed at <issuer>/v1/clients/<id> (RFC 7592) with their
// registration access token, which every update rotates. /__stats then counts `registration`
// (POST <issuer>/v1/clients) and `registration_management` (anything under it).
// Everything else goes to stderr. Exits when stdin reaches EOF (the parent test process died or dropped
// its handle) and on SIGTERM/SIGINT; by hand, run it from a terminal or keep stdin open
// (`sleep infinity | node tests/idp/server.mjs`), since `< /dev/null` means exit at once.
import http from 'node:http';
import { generateKeyPairSync, randomUUID, verify } from 'node:crypto';

// oidc-provider prints its notices with console.info (stdout); stdout carries only the ready line.
console.log = console.info = console.error;
// Imported after the redirect so nothing it prints at load time can reach stdout.
const { default: Provider, errors } = await import('oidc-provider');

const config = JSON.parse(process.argv[2] || '{}');
const ttl = config.accessTokenTtl ?? 3600;
const jwtAccessTokens = config.accessTokenFormat === 'jwt';
const PREFIX = '/oauth2/default';
const REGISTRATION = `${PREFIX}/v1/clients`;
const DEFAULT_AUDIENCE = 'api://default'; // Okta's default authorization server audience
// With "jwksMaxAge": N, the JWKS answers `Cache-Control: max-age=N`; without it, no Cache-Control at all
// (oidc-provider sets none on its jwks endpoint).
const jwksMaxAge = config.jwksMaxAge;
const mintable = config.mint === true;
const registration = config.registration === true;
const initialAccessToken = config.initialAccessToken ?? randomUUID();
if (jwksMaxAge !== undefined && !(Number.isInteger(jwksMaxAge) && jwksMaxAge >= 0)) {
  throw new Error(`jwksMaxAge must be a non-negative integer, got ${JSON.stringify(jwksMaxAge)}`);
}

// Machine-to-machine clients. oidc-provider accepts client_secret_post from a client registered
// for client_secret_basic (and vice versa), like Okta. Clients given in the config are added (same
// client_id: replaced).
const clients = new Map();
for (const c of [
  { client_id: 'tollgate-introspector', client_secret: 'introspector-secret', scope: 'openid' },
  { client_id: 'orders-app', client_secret: 'orders-secret', scope: 'mulescope orders:admin mulescopeX' },
  { client_id: 'other-app', client_secret: 'other-secret', scope: 'mulescope other' },
  { client_id: 'noscope-app', client_secret: 'noscope-secret', scope: 'other mulescopeX' },
  ...(config.clients ?? []),
]) {
  clients.set(c.client_id, {
    token_endpoint_auth_method: 'client_secret_basic',
    ...c,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
  });
}

// Signing keys, newest first: keys[0] signs new tokens; every key here is published in the JWKS.
// A fresh key per run, so no development keys (and no warnings about them) are involved; POST
// /__rotate adds one in front (the older ones stay published, as during a real provider's rotation).
const keys = [];
function newSigningKey() {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };
  keys.unshift({ jwk, publicKey });
  return jwk.kid;
}
newSigningKey();
const cookieKeys = [randomUUID()]; // unused (no interactions); set to silence its warning

const counts = {
  total: 0, token: 0, introspection: 0, jwks: 0, discovery_openid: 0, discovery_oauth: 0, registration: 0, registration_management: 0,
};
const category = {
  [`${PREFIX}/v1/token`]: 'token',
  [`${PREFIX}/v1/introspect`]: 'introspection',
  [`${PREFIX}/v1/keys`]: 'jwks',
  [`${PREFIX}/.well-known/openid-configuration`]: 'discovery_openid',
  // Okta serves OAuth metadata here; oidc-provider does not (404), so clients must fall back to
  // openid-configuration. The RFC 8414 path-insertion form counts too.
  [`${PREFIX}/.well-known/oauth-authorization-server`]: 'discovery_oauth',
  [`/.well-known/oauth-authorization-server${PREFIX}`]: 'discovery_oauth',
};

let issuer; // known once listening (it carries the port)
let handle; // the current provider's request handler; replaced on key rotation
const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (path === '/__stats') {
    // Not counted itself, so reading the stats does not change them.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(counts));
    return;
  }
  if (path === '/__rotate') {
    // Not counted either. oidc-provider reads `jwks` only when constructed, so a rotation builds a
    // new Provider with the new key first (the one it signs with) and the old ones after it, and
    // swaps the handler. Clients are configuration, counters live here, and the default adapter's
    // storage is module-wide, so opaque tokens issued before stay introspectable.
    if (req.method !== 'POST') {
      res.writeHead(405, { 'content-type': 'application/json', allow: 'POST' });
      res.end('{"error":"method_not_allowed"}');
      return;
    }
    const kid = newSigningKey();
    handle = buildProvider().callback();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kid }));
    return;
  }
  if (path === '/__mint' && mintable) {
    // Not counted either: a test control, not a call tollgate makes.
    mint(new URL(req.url, issuer).searchParams).then((token) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ token }));
    }, (e) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: String(e) }));
    });
    return;
  }
  counts.total += 1;
  if (category[path]) counts[category[path]] += 1;
  if (registration && (path === REGISTRATION || path.startsWith(`${REGISTRATION}/`))) {
    counts[path === REGISTRATION ? 'registration' : 'registration_management'] += 1;
    // Okta's API token scheme, taken as the initial access token; oidc-provider reads only Bearer.
    const auth = req.headers.authorization ?? '';
    if (path === REGISTRATION && auth.startsWith('SSWS ')) req.headers.authorization = `Bearer ${auth.slice(5)}`;
  }
  if (path === PREFIX || path.startsWith(`${PREFIX}/`)) {
    // Mount under the prefix the way express does: oidc-provider derives its mount path (and so
    // every endpoint URL) from originalUrl minus url.
    req.originalUrl = req.url;
    req.baseUrl = PREFIX;
    req.url = req.url.slice(PREFIX.length) || '/';
    handle(req, res);
    return;
  }
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end('{"error":"not_found"}');
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  issuer = `http://127.0.0.1:${port}${PREFIX}`;
  handle = buildProvider().callback();
  process.stdout.write(`${JSON.stringify({ issuer, port, ...(registration ? { initialAccessToken } : {}) })}\n`);
});

// A refresh token or ID token for user `alice` of `client_id`, as the code flow would issue them.
// The ID token is signed like oidc-provider's own (header typ JWT, aud the client) and carries the
// `nonce` and `at_hash` of a code flow's.
let current; // the Provider in force
async function mint(params) {
  const client = await current.Client.find(params.get('client_id') ?? 'orders-app');
  if (!client) throw new Error('unknown client');
  switch (params.get('kind')) {
    case 'refresh_token':
      return new current.RefreshToken({
        client, accountId: 'alice', scope: 'openid offline_access mulescope', gty: 'authorization_code', expiresIn: ttl,
      }).save();
    case 'id_token': {
      const token = new current.IdToken({ sub: 'alice' }, { client });
      token.scope = 'openid';
      token.set('nonce', randomUUID());
      token.set('at_hash', params.get('access_token') ?? randomUUID());
      return token.issue({ use: 'idtoken', expiresAt: Math.floor(Date.now() / 1000) + ttl });
    }
    default:
      throw new Error('kind is refresh_token or id_token');
  }
}

// A Provider signing with keys[0] and publishing every key in `keys`.
function buildProvider() {
  const currentKid = keys[0].jwk.kid;
  const provider = new Provider(issuer, {
    clients: [...clients.values()],
    jwks: { keys: keys.map(({ jwk }) => jwk) },
    scopes: ['openid', 'mulescope', 'mulescopeX', 'orders:admin', 'other'],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    cookies: { keys: cookieKeys },
    // Okta custom authorization server endpoint layout, relative to the issuer.
    routes: {
      authorization: '/v1/authorize',
      token: '/v1/token',
      introspection: '/v1/introspect',
      jwks: '/v1/keys',
      registration: '/v1/clients',
      revocation: '/v1/revoke',
      userinfo: '/v1/userinfo',
      end_session: '/v1/logout',
    },
    ttl: { ClientCredentials: ttl, AccessToken: ttl },
    // Differs from the default only to enable the refresh_token grant, so minted refresh tokens
    // are introspectable; nothing here issues one through the token endpoint.
    ...(mintable ? { issueRefreshToken: async () => false } : {}),
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // Like Okta: any authenticated confidential client may introspect any client's token (the
      // gateway introspects tokens issued to other clients).
      introspection: { enabled: true, allowedPolicy: async (ctx, client) => client.clientAuthMethod !== 'none' },
      revocation: { enabled: true },
      ...(registration ? {
        registration: { enabled: true, initialAccessToken, issueRegistrationAccessToken: true },
        registrationManagement: { enabled: true, rotateRegistrationAccessToken: true },
      } : {}),
      // Without a resource server, client_credentials tokens are opaque. In JWT mode every token is
      // for Okta's default audience and is an RS256 JWT signed with the newest key.
      resourceIndicators: jwtAccessTokens
        ? {
          enabled: true,
          defaultResource: async () => DEFAULT_AUDIENCE,
          getResourceServerInfo: async (ctx, resourceIndicator) => {
            if (resourceIndicator !== DEFAULT_AUDIENCE) throw new errors.InvalidTarget();
            return {
              scope: 'mulescope mulescopeX orders:admin other',
              audience: DEFAULT_AUDIENCE,
              accessTokenTTL: ttl,
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: 'RS256', kid: currentKid } },
            };
          },
        }
        : { enabled: false },
    },
  });
  if (jwksMaxAge !== undefined) {
    provider.use(async (ctx, next) => {
      await next();
      if (ctx.oidc?.route === 'jwks' && ctx.status === 200) ctx.set('cache-control', `max-age=${jwksMaxAge}`);
    });
  }
  if (jwtAccessTokens) introspectJwts(provider);
  current = provider;
  return provider;
}

// oidc-provider does not store JWT access tokens, so it cannot introspect them; Okta can. Teach
// ClientCredentials.find (used by introspection and revocation) to accept our own valid JWTs (signed
// by any published key), and remember revoked ones (across rotations).
const revoked = new Set();
function introspectJwts(provider) {
  const { ClientCredentials } = provider;
  const find = ClientCredentials.find.bind(ClientCredentials);
  provider.on('client_credentials.destroyed', (token) => revoked.add(token.jti));
  ClientCredentials.find = async (value, options) => {
    const parts = typeof value === 'string' ? value.split('.') : [];
    if (parts.length !== 3) return find(value, options);
    try {
      const header = JSON.parse(Buffer.from(parts[0], 'base64url'));
      const claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
      const key = keys.find(({ jwk }) => jwk.kid === header.kid);
      const signed = header.alg === 'RS256' && key !== undefined
        && verify('RSA-SHA256', Buffer.from(`${parts[0]}.${parts[1]}`), key.publicKey, Buffer.from(parts[2], 'base64url'));
      if (!signed || claims.iss !== issuer || revoked.has(claims.jti)) return undefined;
      const { jti, iat, exp, aud, scope, client_id: clientId } = claims;
      return ClientCredentials.instantiate({ jti, iat, exp, aud, scope, clientId });
    } catch {
      return undefined;
    }
  };
}

// Die with the parent: it holds our stdin; EOF means it has gone.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
