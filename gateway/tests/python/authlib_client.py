"""Gatehouse as an issuer, as Authlib and joserfc (implementations nobody
here wrote) see it. Run by gateway/tests/e2e/issuer.rs:

    authlib_client.py BASE CLIENT_ID CLIENT_SECRET   discovery, tokens, a call, introspection
    authlib_client.py BASE CLIENT_ID CLIENT_SECRET --introspect TOKEN
    authlib_client.py BASE CLIENT_ID CLIENT_SECRET --code-flow USER PASSWORD REDIRECT_URI
        the authorization code flow as a confidential client (PKCE S256,
        state, nonce), signing in on the login page with requests, and the
        ID token validated by Authlib's CodeIDToken

Prints one JSON object; any failed check raises (a non-zero exit).
"""

import json
import os
import re
import sys

# The tests run over loopback HTTP; Authlib refuses http:// unless told.
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"

import requests  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata  # noqa: E402
from authlib.oidc.discovery import OpenIDProviderMetadata  # noqa: E402
from joserfc import jwt  # noqa: E402
from joserfc.jwk import KeySet  # noqa: E402


def validate(metadata, skip=()):
    """Every validator Authlib has for the document, but `skip`."""
    for key in metadata.REGISTRY_KEYS:
        if key not in skip:
            getattr(metadata, "validate_" + key)()


def discover(base):
    # RFC 8414 section 3: the issuer is where the metadata was found.
    rfc8414 = requests.get(base + "/.well-known/oauth-authorization-server", timeout=10)
    rfc8414.raise_for_status()
    meta = rfc8414.json()
    assert meta["issuer"] == base, meta
    assert meta["response_types_supported"] == ["code"], meta
    validate(AuthorizationServerMetadata(meta))
    oidc = requests.get(base + "/.well-known/openid-configuration", timeout=10).json()
    assert oidc["issuer"] == base and oidc["jwks_uri"] == meta["jwks_uri"], oidc
    # Every validator: no check is skipped.
    validate(OpenIDProviderMetadata(oidc))
    return oidc


def field(html, name):
    m = re.search('name="' + name + '" value="([^"]*)"', html)
    assert m, html
    return m.group(1).replace("&amp;", "&")


def code_flow(base, meta, client_id, secret, user, password, redirect_uri):
    from authlib.common.security import generate_token
    from authlib.jose import JsonWebKey
    from authlib.jose import jwt as authlib_jwt
    from authlib.oidc.core import CodeIDToken

    nonce = generate_token(20)
    verifier = generate_token(48)
    with OAuth2Session(
        client_id,
        secret,
        scope="openid profile email",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    ) as s:
        url, state = s.create_authorization_url(
            meta["authorization_endpoint"], nonce=nonce, code_verifier=verifier
        )
        # The browser's part, with requests: the login page, then back.
        browser = requests.Session()
        r = browser.get(url, allow_redirects=False, timeout=10)
        assert r.status_code == 303, r.text
        login = requests.compat.urljoin(base, r.headers["location"])
        page = browser.get(login, timeout=10)
        r = browser.post(
            base + "/login",
            data={
                "csrf": field(page.text, "csrf"),
                "username": user,
                "password": password,
                "return_to": field(page.text, "return_to"),
            },
            allow_redirects=False,
            timeout=10,
        )
        assert r.status_code == 303, r.text
        r = browser.get(base + r.headers["location"], allow_redirects=False, timeout=10)
        assert r.status_code == 303, r.text
        callback = r.headers["location"]
        assert callback.startswith(redirect_uri), callback
        token = s.fetch_token(
            meta["token_endpoint"],
            authorization_response=callback,
            state=state,
            code_verifier=verifier,
        )
        keys = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
        claims = authlib_jwt.decode(
            token["id_token"],
            keys,
            claims_cls=CodeIDToken,
            claims_options={"iss": {"essential": True, "value": meta["issuer"]}},
            claims_params={
                "nonce": nonce,
                "client_id": client_id,
                "access_token": token["access_token"],
            },
        )
        claims.validate()
        info = s.get(meta["userinfo_endpoint"], timeout=10)
        info.raise_for_status()
        # Authlib's own refresh (client_secret_basic).
        refreshed = s.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
        return {
            "sub": claims["sub"],
            "preferred_username": claims.get("preferred_username"),
            "at_hash": claims.get("at_hash"),
            "userinfo": info.json(),
            "refreshed": "access_token" in refreshed,
            "iss_param": "iss=" in callback,
        }


def main():
    base, client_id, secret = sys.argv[1:4]
    meta = discover(base)
    if len(sys.argv) > 7 and sys.argv[4] == "--code-flow":
        user, password, redirect_uri = sys.argv[5:8]
        print(json.dumps(code_flow(base, meta, client_id, secret, user, password, redirect_uri)))
        return
    if len(sys.argv) > 5 and sys.argv[4] == "--introspect":
        with OAuth2Session(client_id, secret) as s:
            r = s.introspect_token(meta["introspection_endpoint"], token=sys.argv[5])
            r.raise_for_status()
            print(json.dumps(r.json()))
        return

    out = {}
    # client_secret_basic, Authlib's default, asking for one scope.
    with OAuth2Session(client_id, secret, scope="stock:read") as s:
        token = s.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        assert token["token_type"].lower() == "bearer", token
        assert token["scope"] == "stock:read", token
        assert "refresh_token" not in token, token
        call = s.get(base + "/api/stock/1", timeout=10)
        out["call_status"] = call.status_code
        out["principal_kind"] = call.json()["headers"].get("request-principal-kind")
        out["access_token"] = token["access_token"]
        out["expires_in"] = token["expires_in"]
    # client_secret_post.
    with OAuth2Session(client_id, secret, token_endpoint_auth_method="client_secret_post") as s:
        token = s.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        out["post_scope"] = token["scope"]
    # A wrong secret: Authlib reads the RFC 6749 error body.
    with OAuth2Session(client_id, "wrong-" + secret) as s:
        try:
            s.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
            raise AssertionError("a wrong secret got a token")
        except Exception as e:  # authlib's OAuthError
            out["wrong_secret_error"] = getattr(e, "error", str(e))
    # A resource server checks the token itself with the published keys.
    keys = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
    header_alg = json.loads(
        __import__("base64").urlsafe_b64decode(out["access_token"].split(".")[0] + "==")
    )["alg"]
    decoded = jwt.decode(out["access_token"], keys, algorithms=[header_alg])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": base},
        aud={"essential": True, "value": "gatehouse-api"},
        exp={"essential": True},
        client_id={"essential": True, "value": client_id},
    ).validate(decoded.claims)
    out["typ"] = decoded.header.get("typ")
    out["alg"] = header_alg
    # Introspection, authenticated as the client.
    with OAuth2Session(client_id, secret) as s:
        r = s.introspect_token(meta["introspection_endpoint"], token=out["access_token"])
        r.raise_for_status()
        out["introspection"] = r.json()
    print(json.dumps(out))


main()
