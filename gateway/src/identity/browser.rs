//! Browser sessions: what the hosted login page starts and the
//! authorization endpoint (and, later, routes that admit a browser) reads.
//! The cookie holds 256 random bits; the gateway's database holds their
//! SHA-256 hash with the account, how and when it signed in, and its idle
//! and absolute ends, so every replica sees the same sessions, and an
//! ended one is refused by all of them on the next request. Each sign-in
//! makes a new session (a session id fixed before sign-in is never
//! promoted).

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
};
use serde::Deserialize;
use uuid::Uuid;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "browser_sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub token_hash: String,
        pub user_id: Uuid,
        pub amr: String,
        pub auth_time: DateTimeUtc,
        pub created_at: DateTimeUtc,
        pub last_seen_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        pub revoked_at: Option<DateTimeUtc>,
        pub client: String,
        pub user_agent: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `login.session`: how long a browser session lasts.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// Ended after this long without a request (sliding).
    #[serde(default = "default_idle")]
    pub idle_secs: u64,
    /// Ended this long after sign-in, however active.
    #[serde(default = "default_absolute")]
    pub absolute_secs: u64,
}

fn default_idle() -> u64 {
    30 * 60
}

fn default_absolute() -> u64 {
    10 * 3600
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            idle_secs: default_idle(),
            absolute_secs: default_absolute(),
        }
    }
}

/// `login`: the hosted login page and the browser session.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LoginSettings {
    /// Where the login pages live (`/login`, then `/mfa`, `/logout` and
    /// `/style.css` under it).
    #[serde(default = "default_path")]
    pub path: String,
    /// The name the pages show.
    #[serde(default = "default_product")]
    pub product_name: String,
    #[serde(default)]
    pub session: SessionSettings,
    /// How long an authorization code may wait for its exchange.
    #[serde(default = "default_code_ttl")]
    pub code_ttl_secs: u64,
    /// Register the Swagger UI at `/docs` as a first-party public client
    /// (`gatehouse-docs`), so it can sign in with the code flow.
    #[serde(default = "default_true")]
    pub docs_client: bool,
    /// The session cookie's `Domain` (for example `example.com`, so the
    /// apps on its subdomains behind another ingress see it); unset: the
    /// cookie is the gateway host's alone (`__Host-` on HTTPS).
    #[serde(default)]
    pub cookie_domain: Option<String>,
    /// Hosts (names, without port) the login page may send the browser
    /// back to after sign-in, besides the gateway's own (`tokens.public_url`)
    /// and the route table's `host`s: the apps behind another ingress that
    /// asks `/auth/verify`.
    #[serde(default)]
    pub return_hosts: Vec<String>,
}

fn default_path() -> String {
    "/login".into()
}

fn default_product() -> String {
    "gatehouse".into()
}

fn default_code_ttl() -> u64 {
    60
}

fn default_true() -> bool {
    true
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self {
            path: default_path(),
            product_name: default_product(),
            session: SessionSettings::default(),
            code_ttl_secs: default_code_ttl(),
            docs_client: true,
            cookie_domain: None,
            return_hosts: Vec::new(),
        }
    }
}

/// A live browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserSession {
    pub id: Uuid,
    pub user_id: Uuid,
    /// How the sign-in authenticated (RFC 8176 `amr`).
    pub amr: Vec<String>,
    pub auth_time: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub client: String,
    pub user_agent: String,
}

impl BrowserSession {
    fn of(m: entity::Model) -> Self {
        Self {
            id: m.id,
            user_id: m.user_id,
            amr: m.amr.split_whitespace().map(str::to_owned).collect(),
            auth_time: m.auth_time,
            created_at: m.created_at,
            last_seen_at: m.last_seen_at,
            expires_at: m.expires_at,
            client: m.client,
            user_agent: m.user_agent,
        }
    }

    /// The sign-in used a second factor.
    pub fn has_second_factor(&self) -> bool {
        crate::identity::tokens::names_second_factor(&self.amr)
    }
}

/// The store of browser sessions.
pub struct BrowserSessions {
    db: DatabaseConnection,
    idle: Duration,
    absolute: Duration,
}

/// How often a session's last request is written (its idle end moves with
/// it): not on every request.
const SLIDE_EVERY_SECS: i64 = 60;

/// Keep stored text within its column.
fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl BrowserSessions {
    pub fn new(db: DatabaseConnection, settings: SessionSettings) -> Self {
        let secs = |s: u64| Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000));
        Self {
            db,
            idle: secs(settings.idle_secs),
            absolute: secs(settings.absolute_secs),
        }
    }

    /// How long a session may go without a request.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// The absolute lifetime, for the cookie's `Max-Age`.
    pub fn absolute_secs(&self) -> i64 {
        self.absolute.num_seconds()
    }

    /// A sign-in: a new session and the cookie value that names it (the
    /// only time the value exists in clear).
    pub async fn start(
        &self,
        user_id: Uuid,
        amr: &[&str],
        client: &str,
        user_agent: &str,
    ) -> Result<(BrowserSession, String), DbErr> {
        let token = crate::identity::opaque::new_value();
        let now = Utc::now();
        self.sweep().await?;
        let m = entity::ActiveModel {
            id: Set(Uuid::new_v4()),
            token_hash: Set(crate::identity::opaque::digest(&token)),
            user_id: Set(user_id),
            amr: Set(amr.join(" ")),
            auth_time: Set(now),
            created_at: Set(now),
            last_seen_at: Set(now),
            expires_at: Set(now + self.absolute),
            revoked_at: Set(None),
            client: Set(clip(client, 64)),
            user_agent: Set(clip(user_agent, 256)),
        }
        .insert(&self.db)
        .await?;
        Ok((BrowserSession::of(m), token))
    }

    /// Housekeeping: sessions past their absolute end a day ago are of no
    /// use to anyone (the day keeps a just-ended one in its user's
    /// history). How many went.
    pub async fn sweep(&self) -> Result<u64, DbErr> {
        let before = Utc::now() - Duration::days(1);
        Ok(entity::Entity::delete_many()
            .filter(entity::Column::ExpiresAt.lt(before))
            .exec(&self.db)
            .await?
            .rows_affected)
    }

    /// The live session a cookie value names: not ended, not past its
    /// absolute end, not idle for longer than allowed. Its last request
    /// is brought forward (at most once a minute).
    pub async fn find(&self, token: &str) -> Result<Option<BrowserSession>, DbErr> {
        if token.is_empty() || token.len() > 64 {
            return Ok(None);
        }
        let now = Utc::now();
        let Some(m) = entity::Entity::find()
            .filter(entity::Column::TokenHash.eq(crate::identity::opaque::digest(token)))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        if m.revoked_at.is_some() || m.expires_at <= now || m.last_seen_at + self.idle <= now {
            return Ok(None);
        }
        let mut s = BrowserSession::of(m);
        if (now - s.last_seen_at).num_seconds() >= SLIDE_EVERY_SECS {
            entity::Entity::update_many()
                .col_expr(entity::Column::LastSeenAt, Expr::value(now))
                .filter(entity::Column::Id.eq(s.id))
                .exec(&self.db)
                .await?;
            s.last_seen_at = now;
        }
        Ok(Some(s))
    }

    /// End a session (sign-out). Whether it was live.
    pub async fn end(&self, id: Uuid) -> Result<bool, DbErr> {
        let done = entity::Entity::update_many()
            .col_expr(entity::Column::RevokedAt, Expr::value(Utc::now()))
            .filter(entity::Column::Id.eq(id))
            .filter(entity::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(done.rows_affected > 0)
    }

    /// End every live session of a user (an account change, "sign out
    /// everywhere"); their ids.
    pub async fn end_user(&self, user_id: Uuid) -> Result<Vec<Uuid>, DbErr> {
        let live = self.of_user(user_id).await?;
        let ids: Vec<Uuid> = live.iter().map(|s| s.id).collect();
        if !ids.is_empty() {
            entity::Entity::update_many()
                .col_expr(entity::Column::RevokedAt, Expr::value(Utc::now()))
                .filter(entity::Column::Id.is_in(ids.clone()))
                .filter(entity::Column::RevokedAt.is_null())
                .exec(&self.db)
                .await?;
        }
        Ok(ids)
    }

    /// A user's live sessions, newest first.
    pub async fn of_user(&self, user_id: Uuid) -> Result<Vec<BrowserSession>, DbErr> {
        let now = Utc::now();
        Ok(entity::Entity::find()
            .filter(entity::Column::UserId.eq(user_id))
            .filter(entity::Column::RevokedAt.is_null())
            .filter(entity::Column::ExpiresAt.gt(now))
            .filter(entity::Column::LastSeenAt.gt(now - self.idle))
            .order_by_desc(entity::Column::CreatedAt)
            .all(&self.db)
            .await?
            .into_iter()
            .map(BrowserSession::of)
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn clipping_keeps_whole_characters() {
        assert_eq!(clip("abc", 2), "ab");
        assert_eq!(clip("aé", 2), "a");
        assert_eq!(clip("", 5), "");
    }
}
