//! The login's second step: challenges, and the gateway's MFA settings.
//!
//! A password login of an account with a second factor gets no tokens: it
//! gets a challenge, a random 256-bit token (stored only as its SHA-256
//! hash, like refresh tokens) bound to the account and to the client's
//! address, valid for `mfa.challenge_ttl_secs` (five minutes by default),
//! and good for one login. It lives in the gateway's database, so every
//! replica knows it, and using it is one conditional update, so two
//! requests (on any replicas) cannot both use it. Codes themselves are the
//! users service's to check; wrong ones count toward the login lockout.

use chrono::{Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use serde::Deserialize;
use uuid::Uuid;

/// `mfa:` in the gateway's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfaSettings {
    /// Roles exercised only with a second factor (see
    /// `admission::authorize`).
    #[serde(default)]
    pub required_for_roles: Vec<String>,
    /// Lifetime of a login's challenge.
    #[serde(default = "default_challenge_ttl")]
    pub challenge_ttl_secs: u64,
}

fn default_challenge_ttl() -> u64 {
    300
}

impl Default for MfaSettings {
    fn default() -> Self {
        Self {
            required_for_roles: Vec::new(),
            challenge_ttl_secs: default_challenge_ttl(),
        }
    }
}

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "mfa_challenges")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub token_hash: String,
        pub user_id: Uuid,
        /// The canonical username: the login lockout's key.
        pub username: String,
        /// The client address of the password step.
        pub client: String,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
        pub used_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use entity as challenge;

/// A challenge as the second step finds it.
pub type Challenge = challenge::Model;

/// Why a challenge does not admit a second step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Unknown (never issued, or mistyped).
    Unknown,
    Expired,
    Used,
    /// Issued to a password step from another address.
    OtherClient,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Unknown => "the challenge is not valid",
            Refused::Expired => "the challenge has expired; log in again",
            Refused::Used => "the challenge was used already; log in again",
            Refused::OtherClient => "the challenge was issued to another client",
        }
    }
}

/// The gateway's challenges, in its database.
pub struct Challenges {
    db: DatabaseConnection,
    ttl: Duration,
}

impl Challenges {
    pub fn new(db: DatabaseConnection, ttl_secs: u64) -> Self {
        Self {
            db,
            ttl: Duration::seconds(i64::try_from(ttl_secs).unwrap_or(300)),
        }
    }

    /// Seconds a new challenge is valid.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl.num_seconds()
    }

    /// A challenge for `user` (lockout key `username`) after a right
    /// password from `client`: its token, shown once. Challenges that
    /// expired an hour ago are swept on the way.
    pub async fn issue(&self, user: Uuid, username: &str, client: &str) -> Result<String, DbErr> {
        let token = crate::identity::opaque::new_value();
        let now = Utc::now();
        challenge::Entity::delete_many()
            .filter(challenge::Column::ExpiresAt.lt(now - Duration::hours(1)))
            .exec(&self.db)
            .await?;
        challenge::Entity::insert(challenge::ActiveModel {
            id: Set(Uuid::new_v4()),
            token_hash: Set(crate::identity::opaque::digest(&token)),
            user_id: Set(user),
            username: Set(username.to_owned()),
            client: Set(client.to_owned()),
            created_at: Set(now),
            expires_at: Set(now + self.ttl),
            used_at: Set(None),
        })
        .exec_without_returning(&self.db)
        .await?;
        Ok(token)
    }

    /// The challenge `token` names, if `client` may take its second step
    /// now.
    pub async fn find(
        &self,
        token: &str,
        client: &str,
    ) -> Result<Result<Challenge, Refused>, DbErr> {
        let Some(c) = challenge::Entity::find()
            .filter(challenge::Column::TokenHash.eq(crate::identity::opaque::digest(token)))
            .one(&self.db)
            .await?
        else {
            return Ok(Err(Refused::Unknown));
        };
        Ok(if c.used_at.is_some() {
            Err(Refused::Used)
        } else if c.expires_at <= Utc::now() {
            Err(Refused::Expired)
        } else if c.client != client {
            Err(Refused::OtherClient)
        } else {
            Ok(c)
        })
    }

    /// Use the challenge: `true` for the one request that does, while it
    /// is unused and unexpired.
    pub async fn spend(&self, c: &Challenge) -> Result<bool, DbErr> {
        let now = Utc::now();
        let done = challenge::Entity::update_many()
            .col_expr(challenge::Column::UsedAt, Expr::value(now))
            .filter(challenge::Column::Id.eq(c.id))
            .filter(challenge::Column::UsedAt.is_null())
            .filter(challenge::Column::ExpiresAt.gt(now))
            .exec(&self.db)
            .await?;
        Ok(done.rows_affected == 1)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn tokens_are_stored_as_their_hash() {
        let h = crate::identity::opaque::digest("abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
