// A real OpenID provider for the gateway's tests: oidc-provider (the
// certified Node.js implementation) issuing JWT access tokens by client
// credentials (RFC 6749 section 4.4 with RFC 8707 resource indicators).
//
// Listens on 127.0.0.1 on a free port and prints `READY <port>` once it
// serves; its issuer is `http://127.0.0.1:<port>`. Besides the provider's
// own endpoints it answers, for the test only:
//   GET  /test/hits    {"jwks": n}: requests its key set has had
//   POST /test/rotate  a new signing key (the old one stays published);
//                      answers {"kid": "<new kid>"}
//
// Clients (secret = client id + "-secret"): `alice`, `bob` (realm role
// `gatehouse-admin`) and `carol`, each with a username, e-mail and realm
// roles added to its tokens. Resources:
//   urn:gatehouse  audience `gatehouse`, RS256 (the default)
//   urn:other      audience `other`, RS256
//   urn:ps256      audience `gatehouse`, signed PS256
import http from 'node:http';
import { generateKeyPair, exportJWK } from 'jose';
import Provider from 'oidc-provider';

const people = {
  alice: { preferred_username: 'Fed.Alice', email: 'alice@idp.test', roles: ['orders-user'] },
  bob: { preferred_username: 'fed.bob', email: 'bob@idp.test', roles: ['orders-user', 'gatehouse-admin'] },
  carol: { preferred_username: 'fed.carol', email: 'carol@idp.test', roles: [] },
};

const resources = {
  'urn:gatehouse': { audience: 'gatehouse', alg: 'RS256' },
  'urn:other': { audience: 'other', alg: 'RS256' },
  'urn:ps256': { audience: 'gatehouse', alg: 'PS256' },
};

let counter = 0;
async function newKey(alg) {
  const { privateKey } = await generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
  const jwk = await exportJWK(privateKey);
  counter += 1;
  return { ...jwk, kid: `key-${counter}-${Date.now().toString(36)}`, alg, use: 'sig' };
}

function build(issuer, keys) {
  const provider = new Provider(issuer, {
    clients: Object.keys(people).map((id) => ({
      client_id: id,
      client_secret: `${id}-secret`,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      scope: 'orders:read orders:write',
    })),
    jwks: { keys },
    scopes: ['openid', 'orders:read', 'orders:write'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:gatehouse',
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, indicator) => {
          const r = resources[indicator];
          if (!r) throw new Provider.errors.InvalidTarget();
          return {
            scope: 'orders:read orders:write',
            audience: r.audience,
            accessTokenFormat: 'jwt',
            accessTokenTTL: 300,
            jwt: { sign: { alg: r.alg } },
          };
        },
      },
    },
    extraTokenClaims: (ctx, token) => {
      const who = people[token.clientId];
      if (!who) return undefined;
      return {
        preferred_username: who.preferred_username,
        email: who.email,
        realm_access: { roles: who.roles },
      };
    },
  });
  return provider.callback();
}

let hits = 0;
let handler = null;
const server = http.createServer((req, res) => {
  const path = (req.url || '').split('?')[0];
  if (path === '/test/hits') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ jwks: hits }));
    return;
  }
  if (path === '/test/rotate' && req.method === 'POST') {
    rotate().then(
      (kid) => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ kid }));
      },
      (e) => {
        res.statusCode = 500;
        res.end(String(e));
      },
    );
    return;
  }
  if (path === '/jwks') hits += 1;
  handler(req, res);
});

let issuer;
let keys;
async function rotate() {
  const fresh = await newKey('RS256');
  // The new key first: it signs from now on; the old ones stay published.
  keys = [fresh, ...keys];
  handler = build(issuer, keys);
  return fresh.kid;
}

server.listen(0, '127.0.0.1', async () => {
  const { port } = server.address();
  issuer = `http://127.0.0.1:${port}`;
  keys = [await newKey('RS256'), await newKey('PS256')];
  handler = build(issuer, keys);
  process.stdout.write(`READY ${port}\n`);
});
