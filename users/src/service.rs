//! Users domain operations. They take a database connection and know nothing
//! about HTTP, so they are tested without a server.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use common::db::write_txn;
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionSession,
    TransactionTrait,
};
use uuid::Uuid;

use crate::domain::{Email, FullName, LINKED_PREFIX, Role, Username, reserved};
use crate::entity::{external_identity, user, user_role};
use crate::error::{Error, Result};

/// A user as the rest of the service sees it: never with its password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
    pub roles: Vec<Role>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The external identity (issuer, subject) the account signs in as,
    /// when it was created by a trusted identity provider's token.
    pub linked: Option<(String, String)>,
    /// A second factor (TOTP) is active.
    pub mfa: bool,
}

impl User {
    fn from_model(m: user::Model, roles: Vec<Role>) -> Self {
        Self {
            id: m.id,
            username: m.username,
            email: m.email,
            full_name: m.full_name,
            roles,
            is_active: m.is_active,
            created_at: m.created_at,
            updated_at: m.updated_at,
            linked: None,
            mfa: false,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }
}

/// A validated new account; the password is already hashed.
#[derive(Debug)]
pub struct NewUser {
    pub username: Username,
    pub email: Email,
    pub full_name: Option<FullName>,
    pub password_hash: String,
    pub roles: Vec<Role>,
    pub is_active: bool,
}

/// A validated change; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct UserPatch {
    pub username: Option<Username>,
    pub email: Option<Email>,
    /// `Some(None)` clears the name.
    pub full_name: Option<Option<FullName>>,
    pub password_hash: Option<String>,
    pub roles: Option<Vec<Role>>,
    pub is_active: Option<bool>,
}

/// List filters.
#[derive(Debug, Default)]
pub struct ListFilter {
    /// Substring of the (lower-case) username.
    pub username: Option<String>,
    /// Substring of the (lower-case) e-mail.
    pub email: Option<String>,
    pub role: Option<Role>,
    pub active: Option<bool>,
}

fn parse_roles(rows: impl IntoIterator<Item = user_role::Model>) -> HashMap<Uuid, Vec<Role>> {
    let mut map: HashMap<Uuid, Vec<Role>> = HashMap::new();
    for r in rows {
        if let Ok(role) = Role::parse("role", &r.role) {
            map.entry(r.user_id).or_default().push(role);
        }
    }
    for roles in map.values_mut() {
        roles.sort();
    }
    map
}

async fn roles_of<C: ConnectionTrait>(db: &C, ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<Role>>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = user_role::Entity::find()
        .filter(user_role::Column::UserId.is_in(ids.iter().copied()))
        .all(db)
        .await?;
    Ok(parse_roles(rows))
}

async fn load<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<User> {
    let m = user::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(Error::NotFound)?;
    let roles = roles_of(db, &[id]).await?.remove(&id).unwrap_or_default();
    let mut user = User::from_model(m, roles);
    user.linked = links_of(db, &[id]).await?.remove(&id);
    user.mfa = crate::mfa::state(db, id).await? == crate::mfa::State::Active;
    Ok(user)
}

fn admin_ids() -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(user_role::Column::UserId)
        .from(user_role::Entity)
        .and_where(user_role::Column::Role.eq(Role::Admin.as_str()))
        .to_owned()
}

/// On PostgreSQL, lock the admin role rows so that two transactions that each
/// remove a different admin run one after the other (SQLite transactions here
/// are IMMEDIATE, which serializes writers already).
async fn lock_admins<C: ConnectionTrait>(txn: &C) -> Result<()> {
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        user_role::Entity::find()
            .filter(user_role::Column::Role.eq(Role::Admin.as_str()))
            .lock_exclusive()
            .all(txn)
            .await?;
    }
    Ok(())
}

async fn active_admins<C: ConnectionTrait>(db: &C) -> Result<u64> {
    Ok(user::Entity::find()
        .filter(user::Column::IsActive.eq(true))
        .filter(user::Column::Id.in_subquery(admin_ids()))
        .count(db)
        .await?)
}

async fn insert_roles<C: ConnectionTrait>(db: &C, id: Uuid, roles: &[Role]) -> Result<()> {
    if roles.is_empty() {
        return Ok(());
    }
    let rows = roles.iter().map(|r| user_role::ActiveModel {
        user_id: Set(id),
        role: Set(r.as_str().to_owned()),
    });
    user_role::Entity::insert_many(rows).exec(db).await?;
    Ok(())
}

/// Create a local account and its roles atomically. A taken username or
/// e-mail is a 409, a linked account's name (`fed.`) a 422, and nothing is
/// written.
#[tracing::instrument(skip_all, fields(username = new.username.as_str()))]
pub async fn create<C: TransactionTrait>(db: &C, new: NewUser) -> Result<User> {
    if new.username.is_linked() {
        return Err(Error::Validation(vec![reserved("username")]));
    }
    let now = Utc::now();
    let id = Uuid::new_v4();
    let txn = write_txn(db).await?;
    let model = user::ActiveModel {
        id: Set(id),
        username: Set(new.username.as_str().to_owned()),
        email: Set(new.email.as_str().to_owned()),
        full_name: Set(new.full_name.map(FullName::into_inner)),
        password_hash: Set(new.password_hash),
        is_active: Set(new.is_active),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    insert_roles(&txn, id, &new.roles).await?;
    txn.commit().await?;
    Ok(User::from_model(model, new.roles))
}

/// One user.
pub async fn get<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<User> {
    load(db, id).await
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// A page of users in a stable order (creation time, then id), and the total
/// number matching the filter.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    filter: &ListFilter,
    limit: u64,
    offset: u64,
) -> Result<(Vec<User>, u64)> {
    let mut cond = Condition::all();
    if let Some(u) = &filter.username {
        cond = cond.add(
            Expr::col(user::Column::Username)
                .like(LikeExpr::new(escape_like(&u.to_lowercase())).escape('\\')),
        );
    }
    if let Some(e) = &filter.email {
        cond = cond.add(
            Expr::col(user::Column::Email)
                .like(LikeExpr::new(escape_like(&e.to_lowercase())).escape('\\')),
        );
    }
    if let Some(r) = filter.role {
        let ids = Query::select()
            .column(user_role::Column::UserId)
            .from(user_role::Entity)
            .and_where(user_role::Column::Role.eq(r.as_str()))
            .to_owned();
        cond = cond.add(user::Column::Id.in_subquery(ids));
    }
    if let Some(a) = filter.active {
        cond = cond.add(user::Column::IsActive.eq(a));
    }
    let query = user::Entity::find().filter(cond);
    let total = query.clone().count(db).await?;
    let models = query
        .order_by_asc(user::Column::CreatedAt)
        .order_by_asc(user::Column::Id)
        .limit(limit)
        .offset(offset)
        .all(db)
        .await?;
    let ids: Vec<Uuid> = models.iter().map(|m| m.id).collect();
    let mut roles = roles_of(db, &ids).await?;
    let mut links = links_of(db, &ids).await?;
    let mfa = crate::mfa::active_among(db, &ids).await?;
    let users = models.into_iter().map(|m| {
        let r = roles.remove(&m.id).unwrap_or_default();
        let linked = links.remove(&m.id);
        User {
            linked,
            mfa: mfa.contains(&m.id),
            ..User::from_model(m, r)
        }
    });
    Ok((users.collect(), total))
}

/// Apply a change. Refuses (409) to leave the system without an active
/// admin, and (422) a new username on the other side of the linked
/// accounts' prefix: a local account stays out of `fed.`, a linked one in.
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn update<C: TransactionTrait>(db: &C, id: Uuid, patch: UserPatch) -> Result<User> {
    let txn = write_txn(db).await?;
    lock_admins(&txn).await?;
    let before = load(&txn, id).await?;
    if let Some(u) = &patch.username
        && u.as_str() != before.username
        && u.is_linked() != before.linked.is_some()
    {
        return Err(Error::Validation(vec![reserved("username")]));
    }
    let mut am = user::ActiveModel {
        id: Set(id),
        ..Default::default()
    };
    if let Some(u) = patch.username {
        am.username = Set(u.as_str().to_owned());
    }
    if let Some(e) = patch.email {
        am.email = Set(e.as_str().to_owned());
    }
    if let Some(n) = patch.full_name {
        am.full_name = Set(n.map(FullName::into_inner));
    }
    if let Some(h) = patch.password_hash {
        am.password_hash = Set(h);
    }
    if let Some(a) = patch.is_active {
        am.is_active = Set(a);
    }
    am.updated_at = Set(Utc::now());
    am.update(&txn).await?;
    if let Some(roles) = &patch.roles {
        user_role::Entity::delete_many()
            .filter(user_role::Column::UserId.eq(id))
            .exec(&txn)
            .await?;
        insert_roles(&txn, id, roles).await?;
    }
    if before.is_admin() && before.is_active && active_admins(&txn).await? == 0 {
        return Err(Error::LastAdmin); // dropping `txn` rolls back
    }
    let after = load(&txn, id).await?;
    txn.commit().await?;
    Ok(after)
}

/// Delete an account (its roles go with it). Refuses (409) to delete the last
/// active admin.
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn delete<C: TransactionTrait>(db: &C, id: Uuid) -> Result<()> {
    let txn = write_txn(db).await?;
    lock_admins(&txn).await?;
    let before = load(&txn, id).await?;
    user_role::Entity::delete_many()
        .filter(user_role::Column::UserId.eq(id))
        .exec(&txn)
        .await?;
    user::Entity::delete_by_id(id).exec(&txn).await?;
    if before.is_admin() && before.is_active && active_admins(&txn).await? == 0 {
        return Err(Error::LastAdmin);
    }
    txn.commit().await?;
    Ok(())
}

/// What the credential check reads before it checks the password: one
/// row, by username.
#[derive(Debug, Clone)]
pub struct LoginCandidate {
    pub id: Uuid,
    /// The PHC string; empty for an account linked to an identity provider.
    pub password_hash: String,
    pub is_active: bool,
}

/// The account a login names, read with one statement whether it exists or
/// not. Nothing more is read before the password is checked (roles and
/// second factor come after, for a right password only): a known name
/// that took more queries answered a wrong password measurably later than
/// an unknown name (issue 30).
pub async fn find_for_login<C: ConnectionTrait>(
    db: &C,
    username: &str,
) -> Result<Option<LoginCandidate>> {
    Ok(user::Entity::find()
        .filter(user::Column::Username.eq(username))
        .one(db)
        .await?
        .map(|m| LoginCandidate {
            id: m.id,
            password_hash: m.password_hash,
            is_active: m.is_active,
        }))
}

/// The stored hash of a user's password.
pub async fn password_hash<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<String> {
    let m = user::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or(Error::NotFound)?;
    Ok(m.password_hash)
}

/// True when no account exists yet (first start).
pub async fn is_empty<C: ConnectionTrait>(db: &C) -> Result<bool> {
    Ok(user::Entity::find().count(db).await? == 0)
}

/// What an external identity provider says about someone signing in
/// through it, already mapped to local terms by the gateway.
#[derive(Debug, Clone)]
pub struct ExternalIdentity {
    pub issuer: String,
    pub subject: String,
    /// The preferred username; made valid and unique for a new account.
    pub username: String,
    /// Used for a new account when valid and not taken by another one.
    pub email: Option<String>,
    /// The account's roles from now on.
    pub roles: Vec<Role>,
}

/// How [`link`] found the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linked {
    /// Created now, on first use.
    Created,
    /// Known already; `roles_before` when the provider changed its roles,
    /// `renamed_from` when the account had a name from before linked names
    /// were prefixed (it has its prefixed one now).
    Existing {
        roles_before: Option<Vec<Role>>,
        renamed_from: Option<String>,
    },
}

/// The issuer and subject an account is linked to, by user id.
pub async fn links_of<C: ConnectionTrait>(
    db: &C,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, (String, String)>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(external_identity::Entity::find()
        .filter(external_identity::Column::UserId.is_in(ids.iter().copied()))
        .all(db)
        .await?
        .into_iter()
        .map(|l| (l.user_id, (l.issuer, l.subject)))
        .collect())
}

/// The username a new linked account is given, before it is made unique:
/// [`LINKED_PREFIX`] and the provider's, reduced to what a username may
/// hold (a-z, 0-9, `_`, `.`, `-`), so short that a suffix (`-2`, or six
/// random characters) keeps it within 32. A name that has the prefix
/// already keeps it once (`Fed.Alice` is `fed.alice`).
fn username_base(hint: &str) -> String {
    let canonical = common::identity::canonical_username(hint);
    let bare = canonical.strip_prefix(LINKED_PREFIX).unwrap_or(&canonical);
    let s: String = bare
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s: String = s
        .trim_matches(|c| c == '-' || c == '.')
        .chars()
        .take(32 - LINKED_PREFIX.len() - 7)
        .collect();
    let s = s.trim_end_matches(['-', '.']);
    format!("{LINKED_PREFIX}{}", if s.is_empty() { "user" } else { s })
}

async fn free_username<C: ConnectionTrait>(db: &C, base: &str) -> Result<String> {
    let taken = |name: String| async move {
        Ok::<_, Error>(
            user::Entity::find()
                .filter(user::Column::Username.eq(name.as_str()))
                .count(db)
                .await?
                > 0,
        )
    };
    if !taken(base.to_owned()).await? {
        return Ok(base.to_owned());
    }
    for n in 2..=20 {
        let candidate = format!("{base}-{n}");
        if !taken(candidate.clone()).await? {
            return Ok(candidate);
        }
    }
    // Many namesakes: a random suffix, unique in practice (the insert
    // still checks).
    Ok(format!(
        "{base}-{}",
        &Uuid::new_v4().simple().to_string()[..6]
    ))
}

/// The local account of an external identity: created on first use (no
/// password, so it can only sign in through its provider), its roles set
/// to `identity.roles` on every call. Concurrent first uses of one identity
/// create one account.
#[tracing::instrument(skip_all, fields(issuer = identity.issuer.as_str()))]
pub async fn link<C: TransactionTrait>(
    db: &C,
    identity: &ExternalIdentity,
) -> Result<(User, Linked)> {
    let mut roles = identity.roles.clone();
    roles.sort();
    roles.dedup();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match link_once(db, identity, &roles).await {
            // Another request created it (or took the username) meanwhile.
            Err(Error::Taken(_) | Error::Db(_)) if attempt < 3 => continue,
            other => return other,
        }
    }
}

async fn link_once<C: TransactionTrait>(
    db: &C,
    identity: &ExternalIdentity,
    roles: &[Role],
) -> Result<(User, Linked)> {
    let txn = write_txn(db).await?;
    let known = external_identity::Entity::find()
        .filter(external_identity::Column::Issuer.eq(identity.issuer.as_str()))
        .filter(external_identity::Column::Subject.eq(identity.subject.as_str()))
        .one(&txn)
        .await?;
    if let Some(k) = known {
        let before = load(&txn, k.user_id).await?;
        let change_roles = before.roles != roles && before.is_active;
        // Linked before linked names were prefixed: the name goes back to
        // the local namespace now.
        let rename = !before.username.starts_with(LINKED_PREFIX);
        if !change_roles && !rename {
            txn.rollback().await?;
            return Ok((
                before,
                Linked::Existing {
                    roles_before: None,
                    renamed_from: None,
                },
            ));
        }
        if change_roles {
            user_role::Entity::delete_many()
                .filter(user_role::Column::UserId.eq(k.user_id))
                .exec(&txn)
                .await?;
            insert_roles(&txn, k.user_id, roles).await?;
        }
        if rename {
            let name = free_username(&txn, &username_base(&before.username)).await?;
            user::ActiveModel {
                id: Set(k.user_id),
                username: Set(name),
                updated_at: Set(Utc::now()),
                ..Default::default()
            }
            .update(&txn)
            .await?;
        }
        let after = load(&txn, k.user_id).await?;
        txn.commit().await?;
        return Ok((
            after,
            Linked::Existing {
                roles_before: change_roles.then_some(before.roles),
                renamed_from: rename.then_some(before.username),
            },
        ));
    }
    let now = Utc::now();
    let id = Uuid::new_v4();
    let username = free_username(&txn, &username_base(&identity.username)).await?;
    let email = match identity
        .email
        .as_deref()
        .and_then(|e| Email::parse("email", e).ok())
    {
        Some(e)
            if user::Entity::find()
                .filter(user::Column::Email.eq(e.as_str()))
                .count(&txn)
                .await?
                == 0 =>
        {
            e.as_str().to_owned()
        }
        // No address, or one another account holds: accounts are never
        // merged by e-mail (that would let a provider take over a local
        // account), so this one gets a placeholder in a reserved domain.
        _ => format!("{}@linked.invalid", id.simple()),
    };
    let model = user::ActiveModel {
        id: Set(id),
        username: Set(username),
        email: Set(email),
        full_name: Set(None),
        password_hash: Set(String::new()),
        is_active: Set(true),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    insert_roles(&txn, id, roles).await?;
    external_identity::ActiveModel {
        user_id: Set(id),
        issuer: Set(identity.issuer.clone()),
        subject: Set(identity.subject.clone()),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok((
        User {
            linked: Some((identity.issuer.clone(), identity.subject.clone())),
            ..User::from_model(model, roles.to_vec())
        },
        Linked::Created,
    ))
}
