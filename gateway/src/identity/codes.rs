//! Authorization codes (RFC 6749 section 4.1, with PKCE, RFC 7636) and the
//! consents users gave third-party applications, in the gateway's
//! database. A code is 256 random bits, stored only as its SHA-256 hash,
//! short-lived, bound to the client, the redirect URI and the code
//! challenge, and spent once by an atomic update: a second use finds it
//! spent and learns which session it issued, which is then revoked
//! (RFC 6749 section 4.1.2).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub mod entity {
    pub mod code {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "authorization_codes")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: Uuid,
            pub code_hash: String,
            pub client_id: Uuid,
            pub redirect_uri: String,
            pub code_challenge: String,
            pub scope: String,
            pub nonce: Option<String>,
            pub user_id: Uuid,
            pub browser_session_id: Uuid,
            pub amr: String,
            pub auth_time: DateTimeUtc,
            pub created_at: DateTimeUtc,
            pub expires_at: DateTimeUtc,
            pub used_at: Option<DateTimeUtc>,
            pub family_id: Option<Uuid>,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    pub mod consent {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "consents")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub user_id: Uuid,
            #[sea_orm(primary_key, auto_increment = false)]
            pub client_id: Uuid,
            pub scope: String,
            pub granted_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entity::{code, consent};

/// What a code is issued for.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The client's principal id.
    pub client: Uuid,
    pub redirect_uri: String,
    /// `BASE64URL(SHA256(code_verifier))`.
    pub code_challenge: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    pub nonce: Option<String>,
    pub user_id: Uuid,
    pub browser_session: Uuid,
    pub amr: Vec<String>,
    pub auth_time: DateTime<Utc>,
}

/// Why a code was not exchanged (every case is `invalid_grant`).
#[derive(Debug)]
pub enum Refused {
    Unknown,
    Expired,
    /// Spent before: the family it was exchanged for (to revoke), if any.
    Reused(Option<Uuid>),
}

/// Whether `verifier` is one whose S256 transform is `challenge` (RFC 7636
/// section 4.6), and has the shape section 4.1 requires (43 to 128
/// unreserved characters).
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    let shaped = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !shaped {
        return false;
    }
    let derived = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    // Both are public once the code is used; a plain comparison leaks
    // nothing a verifier guess could use (the hash is preimage-resistant).
    derived == challenge
}

/// Whether `challenge` is a well-formed S256 code challenge (43 base64url
/// characters: a SHA-256).
pub fn is_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub struct Codes {
    db: DatabaseConnection,
    ttl: Duration,
}

impl Codes {
    pub fn new(db: DatabaseConnection, ttl_secs: u64) -> Self {
        Self {
            db,
            ttl: Duration::seconds(i64::try_from(ttl_secs).unwrap_or(60)),
        }
    }

    /// A new code for `grant`.
    pub async fn issue(&self, grant: &Grant) -> Result<String, DbErr> {
        let token = crate::identity::opaque::new_value();
        let now = Utc::now();
        code::Entity::delete_many()
            .filter(code::Column::ExpiresAt.lt(now - Duration::hours(1)))
            .exec(&self.db)
            .await?;
        code::ActiveModel {
            id: Set(Uuid::new_v4()),
            code_hash: Set(crate::identity::opaque::digest(&token)),
            client_id: Set(grant.client),
            redirect_uri: Set(grant.redirect_uri.clone()),
            code_challenge: Set(grant.code_challenge.clone()),
            scope: Set(grant.scope.clone()),
            nonce: Set(grant.nonce.clone()),
            user_id: Set(grant.user_id),
            browser_session_id: Set(grant.browser_session),
            amr: Set(grant.amr.join(" ")),
            auth_time: Set(grant.auth_time),
            created_at: Set(now),
            expires_at: Set(now + self.ttl),
            used_at: Set(None),
            family_id: Set(None),
        }
        .insert(&self.db)
        .await?;
        Ok(token)
    }

    /// Spend a code: once, across replicas. `Ok`: the grant and the code's
    /// id (to record the family it is exchanged for).
    pub async fn spend(&self, token: &str) -> Result<Result<(Uuid, Grant), Refused>, DbErr> {
        let Some(m) = code::Entity::find()
            .filter(code::Column::CodeHash.eq(crate::identity::opaque::digest(token)))
            .one(&self.db)
            .await?
        else {
            return Ok(Err(Refused::Unknown));
        };
        if m.used_at.is_some() {
            return Ok(Err(Refused::Reused(m.family_id)));
        }
        let now = Utc::now();
        if m.expires_at <= now {
            return Ok(Err(Refused::Expired));
        }
        let done = code::Entity::update_many()
            .col_expr(code::Column::UsedAt, Expr::value(now))
            .filter(code::Column::Id.eq(m.id))
            .filter(code::Column::UsedAt.is_null())
            .exec(&self.db)
            .await?;
        if done.rows_affected == 0 {
            // Raced by another use: that one issues, this one is a reuse.
            return Ok(Err(Refused::Reused(None)));
        }
        Ok(Ok((
            m.id,
            Grant {
                client: m.client_id,
                redirect_uri: m.redirect_uri,
                code_challenge: m.code_challenge,
                scope: m.scope,
                nonce: m.nonce,
                user_id: m.user_id,
                browser_session: m.browser_session_id,
                amr: m.amr.split_whitespace().map(str::to_owned).collect(),
                auth_time: m.auth_time,
            },
        )))
    }

    /// Record what a spent code was exchanged for.
    pub async fn exchanged(&self, code: Uuid, family: Uuid) -> Result<(), DbErr> {
        code::Entity::update_many()
            .col_expr(code::Column::FamilyId, Expr::value(family))
            .filter(code::Column::Id.eq(code))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The family a reused code issued, read again (the first exchange may
    /// have recorded it after the reuse looked).
    pub async fn family_of_spent(&self, token: &str) -> Result<Option<Uuid>, DbErr> {
        Ok(code::Entity::find()
            .filter(code::Column::CodeHash.eq(crate::identity::opaque::digest(token)))
            .one(&self.db)
            .await?
            .and_then(|m| m.family_id))
    }

    /// The scopes `user` granted `client`, if any.
    pub async fn consent(&self, user: Uuid, client: Uuid) -> Result<Option<Vec<String>>, DbErr> {
        Ok(consent::Entity::find_by_id((user, client))
            .one(&self.db)
            .await?
            .map(|c| c.scope.split_whitespace().map(str::to_owned).collect()))
    }

    /// Remember that `user` granted `client` these scopes (added to what
    /// it granted before).
    pub async fn remember_consent(
        &self,
        user: Uuid,
        client: Uuid,
        scopes: &[String],
    ) -> Result<(), DbErr> {
        let mut all = self.consent(user, client).await?.unwrap_or_default();
        for s in scopes {
            if !all.contains(s) {
                all.push(s.clone());
            }
        }
        consent::Entity::insert(consent::ActiveModel {
            user_id: Set(user),
            client_id: Set(client),
            scope: Set(all.join(" ")),
            granted_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::columns([consent::Column::UserId, consent::Column::ClientId])
                .update_columns([consent::Column::Scope, consent::Column::GrantedAt])
                .to_owned(),
        )
        .exec(&self.db)
        .await?;
        Ok(())
    }

    /// Every consent `user` gave: (client principal id, scopes, when).
    pub async fn consents_of(
        &self,
        user: Uuid,
    ) -> Result<Vec<(Uuid, Vec<String>, DateTime<Utc>)>, DbErr> {
        Ok(consent::Entity::find()
            .filter(consent::Column::UserId.eq(user))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|c| {
                (
                    c.client_id,
                    c.scope.split_whitespace().map(str::to_owned).collect(),
                    c.granted_at,
                )
            })
            .collect())
    }

    /// Withdraw a consent; whether there was one.
    pub async fn withdraw(&self, user: Uuid, client: Uuid) -> Result<bool, DbErr> {
        let done = consent::Entity::delete_by_id((user, client))
            .exec(&self.db)
            .await?;
        Ok(done.rows_affected > 0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_as_rfc_7636_appendix_b() {
        // The RFC's own example.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(is_challenge(challenge));
        assert!(verifier_matches(verifier, challenge));
        assert!(!verifier_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK",
            challenge
        ));
        assert!(!verifier_matches("short", challenge));
        assert!(!verifier_matches(&format!("{verifier}!"), challenge));
        assert!(!is_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c"));
        assert!(!is_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"));
    }
}
