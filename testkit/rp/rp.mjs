// A relying party built on openid-client (the certified Node.js RP), for
// the gateway's sign-in tests. It serves on a free loopback port and prints
// `READY <port>`:
//   GET /start?issuer=..&client_id=..[&acr=..]  -> {"url"}: the authorization
//        URL (PKCE S256, state, nonce), after discovery
//   GET /callback        the redirect URI: the code exchange with every
//        check openid-client makes (state, iss, PKCE, the ID token's
//        signature, nonce, at_hash), then userinfo, a refresh, a revocation
//        and the end-session URL; the outcome at GET /result
//   GET /bye             the post-logout redirect URI
// Nothing here checks what gatehouse answers beyond what openid-client
// itself requires: the test reads /result.
import http from 'node:http';
import * as client from 'openid-client';

let flow = null;
let result = { state: 'pending' };
let loggedOut = null;

function send(res, status, body, type = 'application/json') {
  res.writeHead(status, { 'content-type': type });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
}

async function start(params, base) {
  const issuer = new URL(params.get('issuer'));
  const config = await client.discovery(issuer, params.get('client_id'), undefined, client.None(), {
    execute: [client.allowInsecureRequests],
  });
  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const request = {
    redirect_uri: `${base}/callback`,
    scope: 'openid profile email offline_access',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
    nonce,
  };
  if (params.get('acr')) request.acr_values = params.get('acr');
  flow = { config, verifier, state, nonce, base };
  result = { state: 'pending' };
  return client.buildAuthorizationUrl(config, request).href;
}

async function callback(url) {
  const { config, verifier, state, nonce, base } = flow;
  const tokens = await client.authorizationCodeGrant(config, url, {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  await client.tokenRevocation(config, refreshed.refresh_token);
  let refreshAfterRevocation = 'accepted';
  try {
    await client.refreshTokenGrant(config, refreshed.refresh_token);
  } catch (e) {
    refreshAfterRevocation = e.error || e.code || String(e);
  }
  const endSession = client.buildEndSessionUrl(config, {
    post_logout_redirect_uri: `${base}/bye`,
    id_token_hint: refreshed.id_token || tokens.id_token,
    state: 'bye-state',
  }).href;
  return {
    state: 'done',
    claims,
    userinfo,
    scope: tokens.scope,
    refreshed: Boolean(refreshed.access_token),
    refreshedIdToken: Boolean(refreshed.id_token),
    refreshAfterRevocation,
    endSession,
  };
}

const server = http.createServer(async (req, res) => {
  const base = `http://127.0.0.1:${server.address().port}`;
  const url = new URL(req.url, base);
  try {
    if (url.pathname === '/start') {
      return send(res, 200, { url: await start(url.searchParams, base) });
    }
    if (url.pathname === '/callback') {
      try {
        result = await callback(url);
      } catch (e) {
        result = { state: 'failed', error: String(e), cause: e.cause ? String(e.cause) : null, code: e.code || null };
      }
      return send(res, 200, `<!doctype html><title>Callback</title><h1 id="outcome">${result.state}</h1>`, 'text/html');
    }
    if (url.pathname === '/result') return send(res, 200, result);
    if (url.pathname === '/bye') {
      loggedOut = Object.fromEntries(url.searchParams);
      return send(res, 200, '<!doctype html><title>Bye</title><h1 id="bye">signed out</h1>', 'text/html');
    }
    if (url.pathname === '/logged-out') return send(res, 200, { loggedOut });
    send(res, 404, { error: 'not found' });
  } catch (e) {
    send(res, 500, { error: String(e) });
  }
});
server.listen(0, '127.0.0.1', () => {
  console.log(`READY ${server.address().port}`);
});
