"""Gatehouse as an issuer, as Authlib and joserfc (implementations nobody
here wrote) see it. Run by gateway/tests/e2e/issuer.rs:

    authlib_client.py BASE CLIENT_ID CLIENT_SECRET   discovery, tokens, a call, introspection
    authlib_client.py BASE CLIENT_ID CLIENT_SECRET --introspect TOKEN

Prints one JSON object; any failed check raises (a non-zero exit).
"""

import json
import os
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
    # No authorization endpoint, hence no response type: an empty list,
    # which Authlib reads as missing (it checks for a non-empty one).
    assert meta["response_types_supported"] == [], meta
    validate(AuthorizationServerMetadata(meta), skip=("response_types_supported",))
    oidc = requests.get(base + "/.well-known/openid-configuration", timeout=10).json()
    assert oidc["issuer"] == base and oidc["jwks_uri"] == meta["jwks_uri"], oidc
    validate(OpenIDProviderMetadata(oidc), skip=("response_types_supported",))
    return meta


def main():
    base, client_id, secret = sys.argv[1:4]
    meta = discover(base)
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
