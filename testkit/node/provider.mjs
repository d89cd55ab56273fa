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
//   POST /test/login-client  {"client_id", "client_secret", "redirect_uri"}:
//                      register a relying party for the authorization code
//                      flow (a gateway whose port is known only once it runs)
//
// People sign in on its own page (`/interaction/<uid>`, a plain form with
// `login` and `password`; the password is the login + "-password"); its ID
// tokens carry their username, e-mail, realm roles and `amr` (bob's login
// counts as two factors: `pwd otp`). Consent is implied for the relying
// parties registered by `/test/login-client`.
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
  alice: { preferred_username: 'Fed.Alice', email: 'alice@idp.test', roles: ['orders-user'], amr: ['pwd'] },
  bob: { preferred_username: 'fed.bob', email: 'bob@idp.test', roles: ['orders-user', 'gatehouse-admin'], amr: ['pwd', 'otp'] },
  carol: { preferred_username: 'fed.carol', email: 'carol@idp.test', roles: [], amr: ['pwd'] },
};

// Relying parties registered at run time (`/test/login-client`).
const loginClients = [];

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

function claimsOf(id) {
  const who = people[id];
  return {
    sub: id,
    preferred_username: who.preferred_username,
    email: who.email,
    realm_access: { roles: who.roles },
  };
}

function build(issuer, keys) {
  const provider = new Provider(issuer, {
    clients: [
      ...Object.keys(people).map((id) => ({
        client_id: id,
        client_secret: `${id}-secret`,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        scope: 'orders:read orders:write',
      })),
      ...loginClients.map((c) => ({
        client_id: c.client_id,
        client_secret: c.client_secret,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: [c.redirect_uri],
        token_endpoint_auth_method: 'client_secret_basic',
      })),
    ],
    jwks: { keys },
    scopes: ['openid', 'profile', 'email', 'orders:read', 'orders:write'],
    claims: {
      acr: null,
      amr: null,
      sid: null,
      auth_time: null,
      iss: null,
      // `amr` always, as Entra ID and Okta send it: the gateway counts a
      // second factor from it.
      openid: ['sub', 'amr'],
      profile: ['preferred_username', 'realm_access'],
      email: ['email'],
    },
    // The people's claims in the ID token itself, as most providers send
    // them (not only from userinfo).
    conformIdTokenClaims: false,
    findAccount: (ctx, id) => (people[id] ? { accountId: id, claims: () => claimsOf(id) } : undefined),
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    loadExistingGrant: async (ctx) => {
      const clientId = ctx.oidc.client.clientId;
      const known = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(clientId);
      if (known) return ctx.oidc.provider.Grant.find(known);
      if (!loginClients.some((c) => c.client_id === clientId)) return undefined;
      const grant = new ctx.oidc.provider.Grant({ clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid profile email');
      await grant.save();
      return grant;
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (ctx, client) =>
          loginClients.some((c) => c.client_id === client?.clientId) ? undefined : 'urn:gatehouse',
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
      const who = token.accountId ? undefined : people[token.clientId];
      if (!who) return undefined;
      return {
        preferred_username: who.preferred_username,
        email: who.email,
        realm_access: { roles: who.roles },
      };
    },
  });
  current = provider;
  return provider.callback();
}

// The provider's own sign-in page and its answer.
let current = null;
const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
function loginPage(res, uid, error) {
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test provider sign-in</title></head>
<body><main><h1>Test provider</h1>${error ? `<p role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}">
<label for="login">Login</label><input id="login" name="login" autocomplete="username">
<label for="password">Password</label><input id="password" name="password" type="password">
<button type="submit">Continue</button></form></main></body></html>`);
}

async function interaction(req, res, uid) {
  const details = await current.interactionDetails(req, res);
  if (req.method !== 'POST') {
    loginPage(res, details.uid);
    return;
  }
  let raw = '';
  for await (const chunk of req) raw += chunk;
  const form = new URLSearchParams(raw);
  const login = form.get('login') || '';
  if (!people[login] || form.get('password') !== `${login}-password`) {
    res.statusCode = 401;
    loginPage(res, uid, 'Wrong login or password');
    return;
  }
  await current.interactionFinished(req, res, {
    login: { accountId: login, amr: people[login].amr },
  }, { mergeWithLastSubmission: false });
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
  if (path === '/test/login-client' && req.method === 'POST') {
    let raw = '';
    req.on('data', (c) => { raw += c; });
    req.on('end', () => {
      loginClients.push(JSON.parse(raw));
      handler = build(issuer, keys);
      res.setHeader('content-type', 'application/json');
      res.end('{}');
    });
    return;
  }
  const inter = path.match(/^\/interaction\/([A-Za-z0-9_-]+)$/);
  if (inter) {
    interaction(req, res, inter[1]).catch((e) => {
      res.statusCode = 400;
      res.end(String(e));
    });
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
