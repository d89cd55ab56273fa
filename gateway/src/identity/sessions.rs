//! Refresh-token families and the access-token deny list, in the gateway's
//! database so they survive a restart.
//!
//! A login starts a family. Each refresh spends the presented token and adds
//! a new one to the family; presenting a spent token again is treated as theft
//! and revokes the whole family. Tokens are 256 random bits, stored only as
//! SHA-256 hashes. A family has an absolute expiry no refresh extends.

use std::collections::HashMap;
use std::sync::RwLock;

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    QuerySelect, Set,
};
use uuid::Uuid;

pub mod entity {
    pub mod family {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "session_families")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub user_id: Uuid,
            pub created_at: DateTimeUtc,
            pub expires_at: DateTimeUtc,
            pub revoked_at: Option<DateTimeUtc>,
            /// How the session's login authenticated (RFC 8176 `amr`
            /// values, space-separated): its access tokens say so.
            pub amr: String,
            /// The application a code-flow session was issued to (its
            /// principal id); `None` for `/api/login`'s.
            pub client_id: Option<Uuid>,
            /// The scopes granted to that application, space-separated.
            pub scope: Option<String>,
            /// The browser session it was issued through.
            pub browser_session_id: Option<Uuid>,
            /// When its sign-in happened, when earlier than `created_at`.
            pub auth_time: Option<DateTimeUtc>,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}

        impl Model {
            /// The session's `amr` values.
            pub fn methods(&self) -> Vec<String> {
                self.amr.split_whitespace().map(str::to_owned).collect()
            }
        }
    }

    pub mod refresh {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "refresh_tokens")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub family_id: Uuid,
            pub token_hash: String,
            pub created_at: DateTimeUtc,
            pub expires_at: DateTimeUtc,
            pub used_at: Option<DateTimeUtc>,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod revoked {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "revoked_access_tokens")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub jti: String,
            pub expires_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entity::{family, refresh, revoked};

/// Why a refresh token was refused (every case is a 401 to the client).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("unknown refresh token")]
    Unknown,
    #[error("refresh token expired")]
    Expired,
    #[error("session revoked")]
    Revoked,
    #[error("refresh token reused: session revoked")]
    Reused(Denied),
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// An entry just added to the deny list, to announce to the other replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// A token id, or `sid:<session id>` for every token of a session.
    pub key: String,
    /// When the entry may be forgotten (Unix seconds): no token it denies
    /// is valid past it.
    pub expires_at: i64,
}

/// The deny-list key of a whole session.
pub fn session_key(sid: &str) -> String {
    format!("{SESSION_PREFIX}{sid}")
}

const SESSION_PREFIX: &str = "sid:";

/// Deny-list keys `usr:<user id>@<unix seconds>.<milliseconds>`: every
/// token of that user issued at or before that millisecond is refused,
/// whatever its session (the tokens of an account linked to an identity
/// provider have none). A key without the fraction (written before
/// cutoffs had milliseconds) covers its whole second.
const USER_PREFIX: &str = "usr:";

/// The least time a user's cutoff is remembered: at least as long as a
/// verified token, or a provider user's linked account, stays cached.
pub const USER_CUTOFF_MIN_SECS: i64 = 120;

/// The deny-list key that cuts off every token of `user` issued up to
/// `at_ms` (Unix milliseconds).
pub fn user_cutoff_key(user: Uuid, at_ms: i64) -> String {
    let (secs, ms) = (at_ms.div_euclid(1000), at_ms.rem_euclid(1000));
    format!("{USER_PREFIX}{user}@{secs}.{ms:03}")
}

/// The cutoff of a `usr:` key's time part, in Unix milliseconds.
fn cutoff_ms(at: &str) -> Option<i64> {
    let (secs, frac) = match at.split_once('.') {
        Some((s, f)) if f.len() == 3 && f.bytes().all(|b| b.is_ascii_digit()) => (s, Some(f)),
        Some(_) => return None,
        None => (at, None),
    };
    let whole = secs.parse::<i64>().ok()?.checked_mul(1000)?;
    match frac {
        Some(f) => whole.checked_add(f.parse::<i64>().ok()?),
        None => whole.checked_add(999),
    }
}

/// A new access-token id and its `iat`: a UUIDv7 (RFC 9562), whose
/// timestamp is the moment of issue to the millisecond, and that moment's
/// second. Revocation cutoffs compare at that precision (see
/// [`issued_ms`]), so a token issued just after an account change in the
/// same second is not taken for one issued before it.
pub fn new_token_id() -> (String, i64) {
    let id = Uuid::now_v7();
    let secs = id
        .get_timestamp()
        .and_then(|t| i64::try_from(t.to_unix().0).ok())
        .unwrap_or_else(crate::clock::unix_secs);
    (id.to_string(), secs)
}

/// When a token was issued, in Unix milliseconds, as precisely as it
/// says: the timestamp of a UUIDv7 `jti` that falls within its `iat`
/// second (the gateway's own tokens, see [`new_token_id`]), else the first
/// millisecond of `iat` (the earliest it may have been issued), so a
/// cutoff anywhere in that second covers it.
pub fn issued_ms(jti: &str, iat: i64) -> i64 {
    let whole = iat.saturating_mul(1000);
    let latest = whole.saturating_add(999);
    Uuid::parse_str(jti)
        .ok()
        .filter(|id| id.get_version_num() == 7)
        .and_then(|id| id.get_timestamp())
        .and_then(|t| {
            let (secs, nanos) = t.to_unix();
            let secs = i64::try_from(secs).ok()?;
            Some(secs.saturating_mul(1000) + i64::from(nanos / 1_000_000))
        })
        .filter(|ms| (whole..=latest).contains(ms))
        .unwrap_or(whole)
}

/// A freshly issued refresh token (the only time its clear text exists).
pub struct Issued {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// A session as its access tokens describe it: its id (`sid`), when its
/// login happened (`auth_time`) and how (`amr`).
#[derive(Debug, Clone)]
pub struct Started {
    pub id: Uuid,
    pub auth_time: i64,
    pub amr: Vec<String>,
}

impl Started {
    pub fn of(family: &family::Model) -> Self {
        Self {
            id: family.id,
            auth_time: family.auth_time.unwrap_or(family.created_at).timestamp(),
            amr: family.methods(),
        }
    }
}

/// What a code-flow family is issued to.
#[derive(Debug, Clone)]
pub struct AppSession {
    /// The application's principal id.
    pub client: Uuid,
    pub scope: String,
    pub browser_session: Uuid,
    pub auth_time: DateTime<Utc>,
}

/// A stored refresh token and its family.
pub struct Found {
    pub token: refresh::Model,
    pub family: family::Model,
}

pub struct Sessions {
    db: DatabaseConnection,
    refresh_ttl: Duration,
    session_max: Duration,
    /// How long a revoked session's access tokens may still verify (the
    /// access-token lifetime and the leeway): its deny entry lives that long.
    token_life: Duration,
    /// The database's live revocations, mirrored for the hot path.
    deny: DenyList,
}

/// Revoked access tokens (`jti`) and sessions (`sid`), each with its expiry
/// in Unix seconds, in memory: what every request checks. A poisoned lock
/// fails closed.
#[derive(Debug, Default)]
pub struct DenyList(RwLock<Denials>);

#[derive(Debug, Default)]
struct Denials {
    tokens: HashMap<String, i64>,
    sessions: HashMap<String, i64>,
    /// User id -> (latest cutoff in Unix milliseconds, when the entry may
    /// be forgotten).
    users: HashMap<String, (i64, i64)>,
}

impl Denials {
    /// Add an entry by its deny-list key; true when it was new.
    fn add(&mut self, key: &str, expires_at: i64) -> bool {
        if let Some(rest) = key.strip_prefix(USER_PREFIX) {
            let Some((user, at)) = rest.split_once('@') else {
                return false;
            };
            let Some(at) = cutoff_ms(at) else {
                return false;
            };
            let entry = self.users.entry(user.to_owned()).or_insert((i64::MIN, 0));
            let new = at > entry.0;
            if new {
                *entry = (at, expires_at.max(entry.1));
            }
            return new;
        }
        match key.strip_prefix(SESSION_PREFIX) {
            Some(sid) => self.sessions.insert(sid.to_owned(), expires_at),
            None => self.tokens.insert(key.to_owned(), expires_at),
        }
        .is_none()
    }
}

impl DenyList {
    /// Whether an access token id is on the list.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.0
            .read()
            .map(|m| m.tokens.contains_key(jti))
            .unwrap_or(true)
    }

    /// Whether a session is on the list (every token issued in it).
    pub fn is_session_revoked(&self, sid: &str) -> bool {
        !sid.is_empty()
            && self
                .0
                .read()
                .map(|m| m.sessions.contains_key(sid))
                .unwrap_or(true)
    }

    /// Whether a token is denied: its id, its session, or its user's tokens
    /// issued until a cutoff (one look under the lock, for the hot path;
    /// the issue time is read to the millisecond only when the user has a
    /// cutoff, see [`issued_ms`]).
    pub fn refuses(&self, jti: &str, sid: &str, user: &str, iat: i64) -> bool {
        self.0
            .read()
            .map(|m| {
                m.tokens.contains_key(jti)
                    || (!sid.is_empty() && m.sessions.contains_key(sid))
                    || m.users
                        .get(user)
                        .is_some_and(|(at, _)| issued_ms(jti, iat) <= *at)
            })
            .unwrap_or(true)
    }

    /// Whether the user's tokens were cut off at `since_ms` (Unix
    /// milliseconds) or later: an account change since then.
    pub fn cut_since(&self, user: &str, since_ms: i64) -> bool {
        self.0
            .read()
            .map(|m| m.users.get(user).is_some_and(|(at, _)| *at >= since_ms))
            .unwrap_or(true)
    }

    /// Add one entry by its deny-list key (a token id, or `sid:<id>`).
    pub fn insert(&self, key: &str, expires_at: i64) {
        if let Ok(mut d) = self.0.write() {
            d.add(key, expires_at);
        }
    }

    /// Forget what expired, then add `live`; how many were new.
    fn merge(&self, live: impl IntoIterator<Item = (String, i64)>) -> usize {
        let Ok(mut d) = self.0.write() else {
            return 0;
        };
        let now = crate::clock::unix_secs();
        d.tokens.retain(|_, e| *e > now);
        d.sessions.retain(|_, e| *e > now);
        d.users.retain(|_, (_, e)| *e > now);
        live.into_iter()
            .filter(|(key, exp)| d.add(key, *exp))
            .count()
    }
}

/// Families (and their refresh tokens) a sweep deletes per statement.
const SWEEP_BATCH: u64 = 500;

/// Forget what can no longer matter: deny-list rows past their end, and
/// refresh-token families past their absolute end, with their refresh
/// tokens (all of which ended with them). How many rows went.
async fn sweep(db: &DatabaseConnection) -> Result<u64, DbErr> {
    let now = Utc::now();
    let mut gone = revoked::Entity::delete_many()
        .filter(revoked::Column::ExpiresAt.lt(now))
        .exec(db)
        .await?
        .rows_affected;
    loop {
        let ended: Vec<Uuid> = family::Entity::find()
            .select_only()
            .column(family::Column::Id)
            .filter(family::Column::ExpiresAt.lt(now))
            .limit(SWEEP_BATCH)
            .into_tuple()
            .all(db)
            .await?;
        if ended.is_empty() {
            return Ok(gone);
        }
        let n = ended.len() as u64;
        gone += refresh::Entity::delete_many()
            .filter(refresh::Column::FamilyId.is_in(ended.clone()))
            .exec(db)
            .await?
            .rows_affected;
        gone += family::Entity::delete_many()
            .filter(family::Column::Id.is_in(ended))
            .exec(db)
            .await?
            .rows_affected;
        if n < SWEEP_BATCH {
            return Ok(gone);
        }
    }
}

impl Sessions {
    /// Sweep the store (see [`sweep`]): the refresh tables and the deny
    /// list stay as large as the live sessions, not every login ever.
    pub async fn sweep(&self) -> Result<u64, DbErr> {
        sweep(&self.db).await
    }

    /// Open the store and load the live part of the deny list.
    pub async fn load(
        db: DatabaseConnection,
        refresh_ttl_secs: i64,
        session_max_secs: i64,
        token_life_secs: i64,
    ) -> Result<Self, DbErr> {
        sweep(&db).await?;
        let live = revoked::Entity::find().all(&db).await?;
        let deny = DenyList::default();
        deny.merge(live.into_iter().map(|r| (r.jti, r.expires_at.timestamp())));
        Ok(Self {
            db,
            refresh_ttl: Duration::seconds(refresh_ttl_secs),
            session_max: Duration::seconds(session_max_secs),
            token_life: Duration::seconds(token_life_secs),
            deny,
        })
    }

    async fn add_token(
        &self,
        family_id: Uuid,
        family_expires: DateTime<Utc>,
    ) -> Result<Issued, DbErr> {
        let now = Utc::now();
        let token = crate::identity::opaque::new_value();
        let expires_at = (now + self.refresh_ttl).min(family_expires);
        refresh::ActiveModel {
            id: Set(Uuid::new_v4()),
            family_id: Set(family_id),
            token_hash: Set(crate::identity::opaque::digest(&token)),
            created_at: Set(now),
            expires_at: Set(expires_at),
            used_at: Set(None),
        }
        .insert(&self.db)
        .await?;
        Ok(Issued { token, expires_at })
    }

    /// A login: a new family and its first refresh token.
    pub async fn start(&self, user_id: Uuid, amr: &[&str]) -> Result<(Started, Issued), DbErr> {
        let amr: Vec<String> = amr.iter().map(|m| (*m).to_owned()).collect();
        self.start_family(user_id, &amr, None).await
    }

    /// A code exchange: a new family for an application, tied to the
    /// browser session it came through.
    pub async fn start_for_app(
        &self,
        user_id: Uuid,
        amr: &[String],
        app: AppSession,
    ) -> Result<(Started, Issued), DbErr> {
        self.start_family(user_id, amr, Some(app)).await
    }

    async fn start_family(
        &self,
        user_id: Uuid,
        amr: &[String],
        app: Option<AppSession>,
    ) -> Result<(Started, Issued), DbErr> {
        let now = Utc::now();
        let fam = family::ActiveModel {
            id: Set(Uuid::new_v4()),
            user_id: Set(user_id),
            created_at: Set(now),
            expires_at: Set(now + self.session_max),
            revoked_at: Set(None),
            amr: Set(amr.join(" ")),
            client_id: Set(app.as_ref().map(|a| a.client)),
            scope: Set(app.as_ref().map(|a| a.scope.clone())),
            browser_session_id: Set(app.as_ref().map(|a| a.browser_session)),
            auth_time: Set(app.as_ref().map(|a| a.auth_time)),
        }
        .insert(&self.db)
        .await?;
        let issued = self.add_token(fam.id, fam.expires_at).await?;
        Ok((Started::of(&fam), issued))
    }

    /// The live families a user's application holds.
    pub async fn of_app(&self, user: Uuid, client: Uuid) -> Result<Vec<Uuid>, DbErr> {
        Ok(family::Entity::find()
            .filter(family::Column::UserId.eq(user))
            .filter(family::Column::ClientId.eq(client))
            .filter(family::Column::RevokedAt.is_null())
            .all(&self.db)
            .await?
            .into_iter()
            .map(|f| f.id)
            .collect())
    }

    /// The live families issued through a browser session that end with
    /// it: those without `offline_access`.
    pub async fn of_browser_session(&self, browser: Uuid) -> Result<Vec<Uuid>, DbErr> {
        Ok(family::Entity::find()
            .filter(family::Column::BrowserSessionId.eq(browser))
            .filter(family::Column::RevokedAt.is_null())
            .all(&self.db)
            .await?
            .into_iter()
            .filter(|f| {
                !f.scope
                    .as_deref()
                    .is_some_and(|s| s.split(' ').any(|x| x == "offline_access"))
            })
            .map(|f| f.id)
            .collect())
    }

    /// A known refresh token and its family, as stored.
    pub async fn find(&self, token: &str) -> Result<Option<Found>, DbErr> {
        let Some(token) = refresh::Entity::find()
            .filter(refresh::Column::TokenHash.eq(crate::identity::opaque::digest(token)))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let family = family::Entity::find_by_id(token.family_id)
            .one(&self.db)
            .await?;
        Ok(family.map(|family| Found { token, family }))
    }

    /// Spend a found refresh token. A token spent before (or raced) revokes
    /// its family.
    pub async fn spend(&self, found: &Found) -> Result<(), SessionError> {
        let now = Utc::now();
        let (row, fam) = (&found.token, &found.family);
        if fam.revoked_at.is_some() {
            return Err(SessionError::Revoked);
        }
        if row.used_at.is_some() {
            return Err(SessionError::Reused(self.revoke_family(fam.id).await?));
        }
        if row.expires_at <= now || fam.expires_at <= now {
            return Err(SessionError::Expired);
        }
        // Only one of two concurrent refreshes with the same token can win.
        let res = refresh::Entity::update_many()
            .col_expr(refresh::Column::UsedAt, Expr::value(now))
            .filter(refresh::Column::Id.eq(row.id))
            .filter(refresh::Column::UsedAt.is_null())
            .exec(&self.db)
            .await?;
        if res.rows_affected != 1 {
            return Err(SessionError::Reused(self.revoke_family(fam.id).await?));
        }
        Ok(())
    }

    /// The next refresh token of a family whose last one was just spent. The
    /// family is read again: a reuse racing this refresh may have revoked it.
    pub async fn continue_family(&self, family_id: Uuid) -> Result<Issued, SessionError> {
        let fam = family::Entity::find_by_id(family_id)
            .one(&self.db)
            .await?
            .ok_or(SessionError::Unknown)?;
        if fam.revoked_at.is_some() {
            return Err(SessionError::Revoked);
        }
        Ok(self.add_token(fam.id, fam.expires_at).await?)
    }

    /// End a session: its refresh tokens stop working, and every access
    /// token issued in it is denied. Returns the deny entry to announce.
    pub async fn revoke_family(&self, family_id: Uuid) -> Result<Denied, DbErr> {
        family::Entity::update_many()
            .col_expr(family::Column::RevokedAt, Expr::value(Utc::now()))
            .filter(family::Column::Id.eq(family_id))
            .filter(family::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        let expires = (Utc::now() + self.token_life).timestamp();
        self.deny(session_key(&family_id.to_string()), expires)
            .await
    }

    /// End every live session of a user, but `keep` (the session of a user
    /// who changed their own password). Returns the deny entries.
    pub async fn revoke_user(
        &self,
        user_id: Uuid,
        keep: Option<Uuid>,
    ) -> Result<Vec<Denied>, DbErr> {
        let now = Utc::now();
        let mut live = family::Entity::find()
            .filter(family::Column::UserId.eq(user_id))
            .filter(family::Column::RevokedAt.is_null())
            .filter(family::Column::ExpiresAt.gt(now));
        if let Some(k) = keep {
            live = live.filter(family::Column::Id.ne(k));
        }
        let mut out = Vec::new();
        for f in live.all(&self.db).await? {
            out.push(self.revoke_family(f.id).await?);
        }
        if keep.is_none() {
            // Tokens outside any session too (a linked account's, from its
            // identity provider): those issued until now.
            // At least as long as a verified token stays cached.
            let expires =
                (now + self.token_life.max(Duration::seconds(USER_CUTOFF_MIN_SECS))).timestamp();
            out.push(
                self.deny(user_cutoff_key(user_id, now.timestamp_millis()), expires)
                    .await?,
            );
        }
        Ok(out)
    }

    /// Deny every token whose `sid` is one of `sids` (a machine client's
    /// tokens), until `expires_at`: when the last of them has expired.
    pub async fn revoke_sids(
        &self,
        sids: &[String],
        expires_at: i64,
    ) -> Result<Vec<Denied>, DbErr> {
        let mut out = Vec::with_capacity(sids.len());
        for sid in sids {
            out.push(self.deny(session_key(sid), expires_at).await?);
        }
        Ok(out)
    }

    /// Deny an access token until it expires.
    pub async fn revoke_access(&self, jti: &str, expires_at: i64) -> Result<Denied, DbErr> {
        self.deny(jti.to_owned(), expires_at).await
    }

    async fn deny(&self, key: String, expires_at: i64) -> Result<Denied, DbErr> {
        let exp = DateTime::from_timestamp(expires_at, 0).unwrap_or_else(Utc::now);
        let model = revoked::ActiveModel {
            jti: Set(key.clone()),
            expires_at: Set(exp),
        };
        revoked::Entity::insert(model)
            .on_conflict(
                sea_orm::sea_query::OnConflict::column(revoked::Column::Jti)
                    .update_column(revoked::Column::ExpiresAt)
                    .to_owned(),
            )
            .exec(&self.db)
            .await?;
        self.deny.merge([(key.clone(), expires_at)]);
        Ok(Denied { key, expires_at })
    }

    /// Add a revocation another replica announced.
    pub fn deny_local(&self, jti: &str, expires_at: i64) {
        self.deny.insert(jti, expires_at);
    }

    /// Catch up with the database (the source of truth for every replica):
    /// add what others revoked, forget what expired. Returns how many
    /// revocations were new here.
    pub async fn resync(&self) -> Result<usize, DbErr> {
        let now = Utc::now();
        let live = revoked::Entity::find()
            .filter(revoked::Column::ExpiresAt.gte(now))
            .all(&self.db)
            .await?;
        Ok(self
            .deny
            .merge(live.into_iter().map(|r| (r.jti, r.expires_at.timestamp()))))
    }

    /// The in-memory deny list every request checks.
    pub fn deny_list(&self) -> &DenyList {
        &self.deny
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_cutoff_covers_what_was_issued_up_to_its_millisecond() {
        let user = Uuid::new_v4();
        let deny = DenyList::default();
        deny.insert(&user_cutoff_key(user, 1_700_000_000_300), i64::MAX);
        let u = user.to_string();
        let id = |ms: u64| {
            let ts = uuid::Timestamp::from_unix(
                uuid::NoContext,
                ms / 1000,
                (ms % 1000) as u32 * 1_000_000,
            );
            Uuid::new_v7(ts).to_string()
        };
        // Issued in the same second, before and after the cutoff.
        assert!(deny.refuses(&id(1_700_000_000_299), "", &u, 1_700_000_000));
        assert!(deny.refuses(&id(1_700_000_000_300), "", &u, 1_700_000_000));
        assert!(!deny.refuses(&id(1_700_000_000_301), "", &u, 1_700_000_000));
        // A jti that is not a UUIDv7, or whose time is outside its iat
        // second, counts as the first millisecond of iat: cut off with it.
        assert!(deny.refuses(&Uuid::new_v4().to_string(), "", &u, 1_700_000_000));
        assert!(deny.refuses(&id(1_700_000_001_500), "", &u, 1_700_000_000));
        assert!(!deny.refuses(&Uuid::new_v4().to_string(), "", &u, 1_700_000_001));
        // Other users are not touched.
        assert!(!deny.refuses(&id(1), "", &Uuid::new_v4().to_string(), 0));
    }

    #[test]
    fn cutoff_keys_of_whole_seconds_still_cover_their_second() {
        assert_eq!(cutoff_ms("1700000000"), Some(1_700_000_000_999));
        assert_eq!(cutoff_ms("1700000000.042"), Some(1_700_000_000_042));
        for bad in ["", "x", "1.2", "1.0000", "1.-12", "9223372036854775807"] {
            assert_eq!(cutoff_ms(bad), None, "{bad}");
        }
        let user = Uuid::new_v4();
        let key = user_cutoff_key(user, 1_700_000_000_007);
        assert_eq!(key, format!("usr:{user}@1700000000.007"));
    }

    #[test]
    fn new_token_ids_carry_their_issue_time() {
        let before = Utc::now().timestamp_millis();
        let (jti, iat) = new_token_id();
        let after = Utc::now().timestamp_millis();
        let ms = issued_ms(&jti, iat);
        assert!((before..=after).contains(&ms), "{before} {ms} {after}");
        assert_eq!(ms.div_euclid(1000), iat);
    }
}
