//! Scanner domain operations. They take a database connection (and the
//! prober) and know nothing about HTTP, so they are tested without a server.

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Select, Set,
};
use uuid::Uuid;

use crate::domain::{NewScan, Scope};
use crate::entity::scan;
use crate::error::{Error, Result};
use crate::probe::Prober;
use crate::report::Report;

/// A stored scan: who asked, which replica ran it, when, and the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    pub id: Uuid,
    pub user_id: Uuid,
    pub instance: String,
    pub created_at: DateTime<Utc>,
    pub report: Report,
}

impl TryFrom<scan::Model> for Scan {
    type Error = Error;
    fn try_from(m: scan::Model) -> Result<Self> {
        Ok(Scan {
            id: m.id,
            user_id: m.user_id,
            instance: m.instance,
            created_at: m.created_at,
            report: serde_json::from_value(m.result)?,
        })
    }
}

/// Microseconds: what PostgreSQL keeps, so a scan reads back exactly as it
/// was returned when created, on either database.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn visible(scope: Scope) -> Select<scan::Entity> {
    match scope {
        Scope::Owner(user_id) => scan::Entity::find().filter(scan::Column::UserId.eq(user_id)),
        Scope::All => scan::Entity::find(),
    }
}

/// Scan now and record the result, owned by `owner` and naming `instance`.
/// A target the policy refuses is an error and leaves no record; an
/// unreachable one is recorded with its `error`.
#[tracing::instrument(skip_all, fields(user_id = %owner, url = %new.url.as_url()))]
pub async fn scan_and_record<C: ConnectionTrait>(
    db: &C,
    prober: &Prober,
    instance: &str,
    owner: Uuid,
    new: NewScan,
) -> Result<Scan> {
    let probe = prober.probe(&new.url).await;
    let report = Report::of(&new.url, probe).map_err(Error::TargetRefused)?;
    record(db, instance, owner, report).await
}

/// Store a finished report.
pub async fn record<C: ConnectionTrait>(
    db: &C,
    instance: &str,
    owner: Uuid,
    report: Report,
) -> Result<Scan> {
    let model = scan::ActiveModel {
        id: Set(Uuid::new_v4()),
        user_id: Set(owner),
        url: Set(report.url.clone()),
        final_url: Set(report.status_code.map(|_| report.final_url.clone())),
        status_code: Set(report.status_code.map(i32::from)),
        score: Set(i32::from(report.score)),
        grade: Set(report.grade),
        instance: Set(instance.to_owned()),
        result: Set(serde_json::to_value(&report)?),
        created_at: Set(now()),
    }
    .insert(db)
    .await?;
    Scan::try_from(model)
}

/// One scan, if `scope` may see it; otherwise the same `NotFound` as an id
/// that does not exist.
pub async fn get<C: ConnectionTrait>(db: &C, id: Uuid, scope: Scope) -> Result<Scan> {
    visible(scope)
        .filter(scan::Column::Id.eq(id))
        .one(db)
        .await?
        .ok_or(Error::NotFound)?
        .try_into()
}

/// A page of the scans `scope` may see, newest first (id breaks ties, so
/// pages are stable), and how many there are in all.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    scope: Scope,
    limit: u64,
    offset: u64,
) -> Result<(Vec<Scan>, u64)> {
    let query = visible(scope);
    let total = query.clone().count(db).await?;
    let scans = query
        .order_by_desc(scan::Column::CreatedAt)
        .order_by_desc(scan::Column::Id)
        .limit(limit)
        .offset(offset)
        .all(db)
        .await?
        .into_iter()
        .map(Scan::try_from)
        .collect::<Result<Vec<_>>>()?;
    Ok((scans, total))
}
