//! A real OpenID provider for the tests: oidc-provider from the npm
//! registry (`testkit/node/provider.mjs`, installed by [`crate::node`]),
//! issuing JWT access tokens by client credentials. Its clients `alice` and
//! `bob` stand for people (username, e-mail and realm roles in their
//! tokens); see the script for its resources and test endpoints.

use std::path::Path;

use serde_json::Value;

use crate::node::Program;

/// Status, and the body as JSON (the provider sends no request id, so not
/// [`crate::http::read`]).
struct Answer {
    status: u16,
    body: Value,
    text: String,
}

async fn answer(rb: reqwest::RequestBuilder) -> Answer {
    let res = rb.send().await.expect("the provider answers");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

/// A running provider and the issuer URL its tokens carry.
pub struct Provider {
    pub program: Program,
    pub issuer: String,
}

impl Provider {
    /// Start one on a free loopback port (installing it on first use under
    /// `dir`, a test's `CARGO_TARGET_TMPDIR`).
    pub fn start(dir: &Path) -> Provider {
        let folder = crate::node::install(
            dir,
            "oidc-provider",
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("node"),
        );
        let program = Program::start(&folder, "provider.mjs");
        let issuer = format!("http://127.0.0.1:{}", program.port);
        Provider { program, issuer }
    }

    /// An access token for `client` (`alice` or `bob`), with `extra` form
    /// fields (`scope`, `resource`).
    pub async fn token(&self, client: &str, extra: &[(&str, &str)]) -> String {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .extend_pairs(extra)
            .finish();
        let r = answer(
            crate::client()
                .post(format!("{}/token", self.issuer))
                .basic_auth(client, Some(format!("{client}-secret")))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["access_token"].as_str().unwrap().to_owned()
    }

    /// Requests its key set has had.
    pub async fn jwks_hits(&self) -> u64 {
        let r = answer(crate::client().get(format!("{}/test/hits", self.issuer))).await;
        r.body["jwks"].as_u64().unwrap()
    }

    /// Sign with a new key from now on (the old ones stay published); its kid.
    pub async fn rotate(&self) -> String {
        let r = answer(crate::client().post(format!("{}/test/rotate", self.issuer))).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body["kid"].as_str().unwrap().to_owned()
    }

    /// Register a relying party for the authorization code flow
    /// (`client_secret_basic`) that comes back to `redirect_uri`.
    pub async fn login_client(&self, client_id: &str, secret: &str, redirect_uri: &str) {
        let r = answer(
            crate::client()
                .post(format!("{}/test/login-client", self.issuer))
                .json(&serde_json::json!({
                    "client_id": client_id, "client_secret": secret, "redirect_uri": redirect_uri,
                })),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    /// [`Provider::trusted`]'s entry offering sign-in as `display_name`:
    /// registers the gateway at `gateway` (its public URL, login page at
    /// `/login`) as a client whose secret is written to `secret_file`.
    pub async fn sign_in_option(
        &self,
        gateway: &str,
        display_name: &str,
        secret_file: &Path,
    ) -> Value {
        let client_id = format!("gatehouse-{}", self.program.port);
        let secret = format!("{client_id}-secret");
        std::fs::write(secret_file, format!("{secret}\n")).unwrap();
        self.login_client(&client_id, &secret, &format!("{gateway}/login/callback"))
            .await;
        let mut entry = self.trusted(30)[0].clone();
        entry["login"] = serde_json::json!({
            "client_id": client_id,
            "client_secret_file": secret_file,
            "display_name": display_name,
        });
        entry
    }

    /// A `trusted_issuers` list with this provider, Keycloak-style role
    /// mapping (`realm_access.roles`, `gatehouse-admin` -> `admin`), and an
    /// unknown-kid cooldown of `cooldown_secs`.
    pub fn trusted(&self, cooldown_secs: u64) -> Value {
        serde_json::json!([{
            "issuer": self.issuer,
            "discovery": true,
            "audiences": ["gatehouse"],
            "algorithms": ["RS256", "ES256"],
            "roles": {"claim": "realm_access.roles", "map": {"gatehouse-admin": "admin"}},
            "keys": {"unknown_kid_cooldown_secs": cooldown_secs, "max_refresh_secs": 3600,
                     "fetch_timeout_ms": 1000},
        }])
    }
}
