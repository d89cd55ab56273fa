//! Machine clients (OAuth 2.0 client credentials, RFC 6749 section 4.4):
//! registrations in the gateway's database, each with the scopes it may be
//! granted, the roles its tokens carry, and one or two secrets (a second
//! for a rotation). A secret is shown once, when it is made, and stored as
//! an argon2id hash; checking one runs on the blocking pool, a few at once.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, ModelTrait, QueryFilter,
    QueryOrder, Set,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use utoipa::ToSchema;
use uuid::Uuid;

pub mod entity {
    pub mod client {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "oauth_clients")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            #[sea_orm(unique)]
            pub client_id: String,
            pub name: String,
            pub scopes: String,
            pub roles: String,
            /// Audiences whose tokens it may introspect, space-separated.
            pub introspect: String,
            pub redirect_uris: String,
            pub post_logout_redirect_uris: String,
            pub grant_types: String,
            pub public: bool,
            pub first_party: bool,
            pub is_active: bool,
            pub generation: i64,
            pub created_at: DateTimeUtc,
            pub updated_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod secret {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "oauth_client_secrets")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub client_id: Uuid,
            pub hash: String,
            pub created_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entity::{client, secret};

pub use crate::identity::apps::AppFields;

/// What a new registration says.
#[derive(Debug, Clone)]
pub struct Registration<'a> {
    pub name: &'a str,
    pub scopes: &'a [String],
    pub roles: &'a [String],
    pub introspect: &'a [String],
    pub app: AppFields,
}

/// At most this many secrets per client (the current and the next).
pub const MAX_SECRETS: usize = 2;

/// A client as the admin API shows it (never a secret or a hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Client {
    /// The principal id its tokens carry as `sub` (what services see).
    pub id: Uuid,
    /// What it authenticates with.
    pub client_id: String,
    pub name: String,
    /// Scopes it may be granted.
    pub scopes: Vec<String>,
    /// Roles its tokens carry.
    pub roles: Vec<String>,
    /// The audiences whose tokens it may introspect (RFC 7662); empty: it
    /// may not introspect at all.
    pub introspect: Vec<String>,
    /// What makes it an application people sign in to.
    #[serde(flatten)]
    pub app: AppFields,
    pub active: bool,
    pub secrets: Vec<SecretInfo>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Named in its tokens' `sid`; bumped when they are all revoked.
    #[serde(skip)]
    pub generation: i64,
}

impl Client {
    /// The `sid` of the tokens issued with one of its secrets: a secret's
    /// removal, or a new generation, revokes exactly those.
    pub fn token_sid(&self, secret: Uuid) -> String {
        token_sid(secret, self.generation)
    }

    /// The `sid` of every token it may hold now.
    pub fn live_sids(&self) -> Vec<String> {
        self.secrets.iter().map(|s| self.token_sid(s.id)).collect()
    }
}

fn token_sid(secret: Uuid, generation: i64) -> String {
    format!("{secret}.{generation}")
}

/// One of a client's secrets: its id and age, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretInfo {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
}

/// What a registration may change.
#[derive(Debug, Default, Clone)]
pub struct ClientPatch {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub roles: Option<Vec<String>>,
    pub introspect: Option<Vec<String>>,
    /// The application fields, whole (checked by the caller).
    pub app: Option<AppFields>,
    pub active: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no such client")]
    NotFound,
    #[error("a client keeps at most {MAX_SECRETS} secrets; remove one first")]
    TooManySecrets,
    #[error("a client keeps at least one secret; add the next before removing this one")]
    LastSecret,
    #[error("hashing failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Db(#[from] DbErr),
}

fn split(s: &str, sep: char) -> Vec<String> {
    s.split(sep)
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

fn new_secret() -> SecretString {
    SecretString::from(crate::identity::opaque::new_value())
}

fn new_client_id() -> String {
    let mut raw = [0u8; 12];
    rand::rng().fill_bytes(&mut raw);
    format!("gh_{}", URL_SAFE_NO_PAD.encode(raw))
}

fn argon2() -> argon2::Argon2<'static> {
    // The users service's parameters (OWASP): m = 19 MiB, t = 2, p = 1.
    let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

pub struct Clients {
    db: DatabaseConnection,
    /// Hashes at once (each takes a core for tens of milliseconds).
    hashing: Arc<Semaphore>,
}

impl Clients {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            hashing: Arc::new(Semaphore::new(2)),
        }
    }

    async fn hash(&self, secret: &SecretString) -> Result<String, ClientError> {
        let _permit = self
            .hashing
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ClientError::Hash(e.to_string()))?;
        let secret = secret.clone();
        tokio::task::spawn_blocking(move || {
            argon2()
                .hash_password(secret.expose_secret().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| ClientError::Hash(e.to_string()))
        })
        .await
        .map_err(|e| ClientError::Hash(e.to_string()))?
    }

    /// Which of `hashes` `secret` matches (`None` for `hashes`: an unknown
    /// client, checked against a dummy hash for the same work).
    async fn verifies(
        &self,
        secret: &SecretString,
        hashes: Option<Vec<(Uuid, String)>>,
    ) -> Option<Uuid> {
        let _permit = self.hashing.clone().acquire_owned().await.ok()?;
        let secret = secret.clone();
        tokio::task::spawn_blocking(move || {
            let known = hashes.is_some();
            let hashes = hashes.unwrap_or_else(|| vec![(Uuid::nil(), dummy_hash().to_owned())]);
            let matched = hashes.into_iter().find(|(_, h)| {
                argon2::PasswordHash::new(h).is_ok_and(|parsed| {
                    argon2()
                        .verify_password(secret.expose_secret().as_bytes(), &parsed)
                        .is_ok()
                })
            });
            matched.filter(|_| known).map(|(id, _)| id)
        })
        .await
        .ok()
        .flatten()
    }

    async fn view(&self, m: client::Model) -> Result<Client, DbErr> {
        let secrets = secret::Entity::find()
            .filter(secret::Column::ClientId.eq(m.id))
            .order_by_asc(secret::Column::CreatedAt)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|s| SecretInfo {
                id: s.id,
                created_at: s.created_at,
            })
            .collect();
        Ok(Client {
            id: m.id,
            client_id: m.client_id,
            name: m.name,
            scopes: split(&m.scopes, ' '),
            roles: split(&m.roles, ','),
            introspect: split(&m.introspect, ' '),
            app: AppFields {
                redirect_uris: split(&m.redirect_uris, ' '),
                post_logout_redirect_uris: split(&m.post_logout_redirect_uris, ' '),
                grant_types: split(&m.grant_types, ' '),
                public: m.public,
                first_party: m.first_party,
            },
            active: m.is_active,
            secrets,
            created_at: m.created_at,
            updated_at: m.updated_at,
            generation: m.generation,
        })
    }

    /// Register a client; its first secret, shown this once (none for a
    /// public client). `client_id`: a fixed one (a client the
    /// configuration ships), else a new random one.
    pub async fn create(
        &self,
        reg: &Registration<'_>,
        client_id: Option<&str>,
    ) -> Result<(Client, Option<SecretString>), ClientError> {
        let now = Utc::now();
        let secret = if reg.app.public {
            None
        } else {
            let secret = new_secret();
            let hash = self.hash(&secret).await?;
            Some((secret, hash))
        };
        let m = client::ActiveModel {
            id: Set(Uuid::new_v4()),
            client_id: Set(client_id.map_or_else(new_client_id, str::to_owned)),
            name: Set(reg.name.to_owned()),
            scopes: Set(reg.scopes.join(" ")),
            roles: Set(reg.roles.join(",")),
            introspect: Set(reg.introspect.join(" ")),
            redirect_uris: Set(reg.app.redirect_uris.join(" ")),
            post_logout_redirect_uris: Set(reg.app.post_logout_redirect_uris.join(" ")),
            grant_types: Set(reg.app.grant_types.join(" ")),
            public: Set(reg.app.public),
            first_party: Set(reg.app.first_party),
            is_active: Set(true),
            generation: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&self.db)
        .await?;
        let shown = match secret {
            Some((secret, hash)) => {
                secret::ActiveModel {
                    id: Set(Uuid::new_v4()),
                    client_id: Set(m.id),
                    hash: Set(hash),
                    created_at: Set(now),
                }
                .insert(&self.db)
                .await?;
                Some(secret)
            }
            None => None,
        };
        Ok((self.view(m).await?, shown))
    }

    /// Register the Swagger UI at `/docs` as a first-party public client
    /// ([`DOCS_CLIENT_ID`](crate::identity::apps::DOCS_CLIENT_ID)), sent back
    /// to `<public_url>/docs/oauth2-redirect.html`, unless it is registered.
    pub async fn ensure_docs_client(&self, public_url: &str) -> Result<(), ClientError> {
        use crate::identity::apps;
        let reg = Registration {
            name: "API documentation (Swagger UI)",
            scopes: &[],
            roles: &[],
            introspect: &[],
            app: AppFields {
                redirect_uris: vec![format!("{public_url}{}", apps::DOCS_REDIRECT_PATH)],
                post_logout_redirect_uris: Vec::new(),
                grant_types: vec![apps::AUTHORIZATION_CODE.to_owned()],
                public: true,
                first_party: true,
            },
        };
        self.ensure(apps::DOCS_CLIENT_ID, &reg).await
    }

    /// The client a `client_id` names (active or not).
    pub async fn find(&self, client_id: &str) -> Result<Option<Client>, DbErr> {
        match client::Entity::find()
            .filter(client::Column::ClientId.eq(client_id))
            .one(&self.db)
            .await?
        {
            Some(m) => Ok(Some(self.view(m).await?)),
            None => Ok(None),
        }
    }

    /// Register a client the configuration ships under a fixed
    /// `client_id`, unless one by that id exists (an admin may have changed
    /// it since: that is kept).
    pub async fn ensure(&self, client_id: &str, reg: &Registration<'_>) -> Result<(), ClientError> {
        if self.find(client_id).await?.is_some() {
            return Ok(());
        }
        match self.create(reg, Some(client_id)).await {
            Ok(_) => Ok(()),
            // Another replica starting at the same moment registered it
            // first (the unique `client_id` refused this one): it is there.
            Err(_) if self.find(client_id).await.ok().flatten().is_some() => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn list(&self) -> Result<Vec<Client>, DbErr> {
        let mut out = Vec::new();
        for m in client::Entity::find()
            .order_by_asc(client::Column::CreatedAt)
            .all(&self.db)
            .await?
        {
            out.push(self.view(m).await?);
        }
        Ok(out)
    }

    pub async fn get(&self, id: Uuid) -> Result<Client, ClientError> {
        let m = client::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or(ClientError::NotFound)?;
        Ok(self.view(m).await?)
    }

    /// Change a registration. A change that takes something away (its
    /// scopes, its roles, its activation) starts a new generation: the
    /// `sid`s of the tokens it held until now come back, to deny.
    pub async fn update(
        &self,
        id: Uuid,
        patch: ClientPatch,
    ) -> Result<(Client, Vec<String>), ClientError> {
        let before = self.get(id).await?;
        let narrows = patch.scopes.as_ref().is_some_and(|s| *s != before.scopes)
            || patch.roles.as_ref().is_some_and(|r| *r != before.roles)
            || (patch.active == Some(false) && before.active);
        let m = client::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or(ClientError::NotFound)?;
        let mut am: client::ActiveModel = m.into();
        if narrows {
            am.generation = Set(before.generation + 1);
        }
        if let Some(n) = patch.name {
            am.name = Set(n);
        }
        if let Some(s) = patch.scopes {
            am.scopes = Set(s.join(" "));
        }
        if let Some(r) = patch.roles {
            am.roles = Set(r.join(","));
        }
        if let Some(i) = patch.introspect {
            am.introspect = Set(i.join(" "));
        }
        if let Some(a) = patch.app {
            am.redirect_uris = Set(a.redirect_uris.join(" "));
            am.post_logout_redirect_uris = Set(a.post_logout_redirect_uris.join(" "));
            am.grant_types = Set(a.grant_types.join(" "));
            am.first_party = Set(a.first_party);
        }
        if let Some(a) = patch.active {
            am.is_active = Set(a);
        }
        am.updated_at = Set(Utc::now());
        let m = am.update(&self.db).await?;
        let revoked = if narrows {
            before.live_sids()
        } else {
            Vec::new()
        };
        Ok((self.view(m).await?, revoked))
    }

    /// Remove a registration; the `sid`s of its tokens come back, to deny.
    pub async fn delete(&self, id: Uuid) -> Result<Vec<String>, ClientError> {
        let before = self.get(id).await?;
        let m = client::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or(ClientError::NotFound)?;
        secret::Entity::delete_many()
            .filter(secret::Column::ClientId.eq(id))
            .exec(&self.db)
            .await?;
        m.delete(&self.db).await?;
        Ok(before.live_sids())
    }

    /// A further secret (for a rotation), shown this once.
    pub async fn add_secret(&self, id: Uuid) -> Result<(SecretInfo, SecretString), ClientError> {
        let c = self.get(id).await?;
        if c.secrets.len() >= MAX_SECRETS {
            return Err(ClientError::TooManySecrets);
        }
        let secret = new_secret();
        let hash = self.hash(&secret).await?;
        let now = Utc::now();
        let s = secret::ActiveModel {
            id: Set(Uuid::new_v4()),
            client_id: Set(id),
            hash: Set(hash),
            created_at: Set(now),
        }
        .insert(&self.db)
        .await?;
        Ok((
            SecretInfo {
                id: s.id,
                created_at: s.created_at,
            },
            secret,
        ))
    }

    /// Remove a secret (never the last); the `sid` of the tokens obtained
    /// with it comes back, to deny.
    pub async fn remove_secret(&self, id: Uuid, secret_id: Uuid) -> Result<String, ClientError> {
        let c = self.get(id).await?;
        if !c.secrets.iter().any(|s| s.id == secret_id) {
            return Err(ClientError::NotFound);
        }
        if c.secrets.len() <= 1 {
            return Err(ClientError::LastSecret);
        }
        secret::Entity::delete_many()
            .filter(secret::Column::Id.eq(secret_id))
            .filter(secret::Column::ClientId.eq(id))
            .exec(&self.db)
            .await?;
        Ok(c.token_sid(secret_id))
    }

    /// The active client these credentials authenticate, if any, and the
    /// secret that matched. An unknown client id costs a hash check too, so
    /// timing tells nothing.
    pub async fn authenticate(
        &self,
        client_id: &str,
        secret: &SecretString,
    ) -> Result<Option<(Client, Uuid)>, DbErr> {
        let found = client::Entity::find()
            .filter(client::Column::ClientId.eq(client_id))
            .one(&self.db)
            .await?;
        let hashes = match &found {
            Some(m) => Some(
                secret::Entity::find()
                    .filter(secret::Column::ClientId.eq(m.id))
                    .all(&self.db)
                    .await?
                    .into_iter()
                    .map(|s| (s.id, s.hash))
                    .collect(),
            ),
            None => None,
        };
        let matched = self.verifies(secret, hashes).await;
        match (found, matched) {
            (Some(m), Some(secret)) if m.is_active => Ok(Some((self.view(m).await?, secret))),
            _ => Ok(None),
        }
    }
}

/// A hash of nothing anyone knows, checked for unknown client ids.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        argon2()
            .hash_password(new_secret().expose_secret().as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}
