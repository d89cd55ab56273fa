//! The audit trail of security events: logins and lockouts, refreshes and
//! reuse, logouts, password and account changes, admin changes.
//!
//! Each service that sees an event writes it to the `audit_events` table of
//! its own database (append-only; nothing updates or deletes a row) and emits
//! it as a structured log line (`event=...`). [`AuditLog::record`] never
//! waits for the database: the write happens beside the request, and a write
//! that fails (the database is down) is counted in [`AuditLog::failures`]
//! and logged, while the request answers as it would have. No record holds a
//! secret: no password, token or body.
//!
//! The gateway serves `GET /api/audit` (admins) from its own table and the
//! users service's (`GET /internal/audit`), merged newest first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Condition;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::problem::{FieldError, Problem};

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub at: DateTimeUtc,
        pub event: String,
        pub actor: Option<Uuid>,
        pub subject: Option<String>,
        pub client: Option<String>,
        pub request_id: Option<String>,
        pub result: String,
        pub detail: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use entity::{Column, Entity};

/// One event to record.
#[derive(Debug, Clone)]
pub struct Event {
    /// `login.success`, `user.deactivated`, ... (dotted, stable names).
    pub event: &'static str,
    /// Who did it (`None`: anonymous, e.g. a failed login).
    pub actor: Option<Uuid>,
    /// What it was done to (a username, a user id, an upstream ...).
    pub subject: Option<String>,
    /// The client's address, as the gateway believed it.
    pub client: Option<String>,
    pub request_id: Option<String>,
    /// `success`, `failure` or `refused`.
    pub result: &'static str,
    /// A short, secret-free description.
    pub detail: Option<String>,
}

impl Event {
    pub fn new(event: &'static str, result: &'static str) -> Self {
        Self {
            event,
            actor: None,
            subject: None,
            client: None,
            request_id: crate::telemetry::current_request_id(),
            result,
            detail: None,
        }
    }

    pub fn actor(mut self, actor: Option<Uuid>) -> Self {
        self.actor = actor;
        self
    }

    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(text(subject.into(), 256));
        self
    }

    pub fn client(mut self, client: Option<String>) -> Self {
        self.client = client.map(|c| text(c, 64));
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(text(detail.into(), 1024));
        self
    }
}

/// A value as it is stored: control characters written out (`\u{0}`), so
/// none reaches the database (PostgreSQL refuses NUL in text, and one such
/// record would fail its whole batch) or a reader's terminal; then cut to
/// `max` bytes. A decoded path parameter can hold anything.
fn text(s: String, max: usize) -> String {
    let s = if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        s
    };
    truncate(s, max)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Records waiting to be written; past it, a record is counted as not
/// written (its log line stands) instead of holding memory: a storm of
/// refused logins, each one an event, cannot grow the process.
const QUEUE: usize = 10_000;
/// Records per insert.
const BATCH: usize = 256;

/// Where a service's events go.
#[derive(Clone)]
pub struct AuditLog {
    db: DatabaseConnection,
    failures: Arc<AtomicU64>,
    service: &'static str,
    queue: tokio::sync::mpsc::Sender<entity::ActiveModel>,
}

impl AuditLog {
    /// The log, and its writer on the current runtime: one task that
    /// inserts what is queued, in batches, in order.
    pub fn new(db: DatabaseConnection, service: &'static str) -> Self {
        let failures = Arc::new(AtomicU64::new(0));
        let (queue, rows) = tokio::sync::mpsc::channel(QUEUE);
        actix_web::rt::spawn(write(db.clone(), rows, failures.clone(), service));
        Self {
            db,
            failures,
            service,
            queue,
        }
    }

    /// Log the event now and write it in the background.
    pub fn record(&self, e: Event) {
        tracing::info!(
            event = e.event,
            actor = e.actor.map(|a| a.to_string()),
            subject = e.subject.as_deref(),
            client = e.client.as_deref(),
            result = e.result,
            detail = e.detail.as_deref(),
            "audit"
        );
        let row = entity::ActiveModel {
            id: Set(Uuid::new_v4()),
            at: Set(Utc::now()),
            event: Set(e.event.to_owned()),
            actor: Set(e.actor),
            subject: Set(e.subject),
            client: Set(e.client),
            request_id: Set(e.request_id),
            result: Set(e.result.to_owned()),
            detail: Set(e.detail),
        };
        if self.queue.try_send(row).is_err() {
            // Full (the database is slower than the events) or no writer.
            if self
                .failures
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(1000)
            {
                tracing::warn!(
                    service = self.service,
                    "audit records arrive faster than they are written; this one is only in the log"
                );
            }
        }
    }

    /// Records that could not be written since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }
}

/// The writer: drains the queue in batches until every `AuditLog` is gone.
async fn write(
    db: DatabaseConnection,
    mut rows: tokio::sync::mpsc::Receiver<entity::ActiveModel>,
    failures: Arc<AtomicU64>,
    service: &'static str,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rows.recv_many(&mut batch, BATCH).await > 0 {
        let n = batch.len() as u64;
        if let Err(err) = entity::Entity::insert_many(batch.drain(..)).exec(&db).await {
            failures.fetch_add(n, Ordering::Relaxed);
            tracing::warn!(service, error = %err, records = n, "audit records could not be written");
        }
    }
}

/// `GET /api/audit` and `/internal/audit` filters.
#[derive(Debug, Clone, Default, Deserialize, Serialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this event (e.g. `login.failure`).
    pub event: Option<String>,
    /// Only what this user id did.
    pub actor: Option<Uuid>,
    /// Only what was done to this subject (a username, a user id, ...).
    pub subject: Option<String>,
    /// From this time on (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u64>,
    /// The `next` cursor of the previous page.
    pub before: Option<String>,
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// The service whose database holds it (`gateway`, `users`).
    pub service: String,
    pub event: String,
    pub actor: Option<Uuid>,
    pub subject: Option<String>,
    pub client: Option<String>,
    pub request_id: Option<String>,
    /// `success`, `failure` or `refused`.
    pub result: String,
    pub detail: Option<String>,
}

/// A page of records, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditRecord>,
    /// Pass as `before` for the next page; absent on the last one.
    pub next: Option<String>,
    /// Services whose records could not be read just now (the page holds
    /// the others'); empty when the page is complete.
    #[serde(default)]
    pub missing: Vec<String>,
}

/// A position in the newest-first order: the time (microseconds) and id of
/// the last record of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at_us: i64,
    pub id: Uuid,
}

impl Cursor {
    pub fn of(r: &AuditRecord) -> Self {
        Self {
            at_us: r.at.timestamp_micros(),
            id: r.id,
        }
    }

    pub fn encode(&self) -> String {
        format!("{}_{}", self.at_us, self.id.simple())
    }

    pub fn parse(s: &str) -> Option<Self> {
        let (at, id) = s.split_once('_')?;
        Some(Self {
            at_us: at.parse().ok()?,
            id: Uuid::parse_str(id).ok()?,
        })
    }

    /// Whether `r` comes after this position (older, or as old and a
    /// smaller id).
    pub fn precedes(&self, r: &AuditRecord) -> bool {
        (r.at.timestamp_micros(), r.id) < (self.at_us, self.id)
    }
}

/// Checked filters, ready to query.
#[derive(Debug, Clone)]
pub struct Filter {
    pub query: AuditQuery,
    pub limit: u64,
    pub before: Option<Cursor>,
}

impl AuditQuery {
    /// Check the values: a 422 listing every bad one.
    pub fn check(self) -> Result<Filter, Problem> {
        let mut errors = Vec::new();
        let limit = self.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            errors.push(FieldError::new("limit", "range", "must be 1 to 200"));
        }
        let before = match self.before.as_deref() {
            None => None,
            Some(c) => match Cursor::parse(c) {
                Some(c) => Some(c),
                None => {
                    errors.push(FieldError::new(
                        "before",
                        "cursor",
                        "is not a cursor this API returned",
                    ));
                    None
                }
            },
        };
        for (name, v) in [("event", &self.event), ("subject", &self.subject)] {
            if v.as_ref().is_some_and(|v| v.len() > 256) {
                errors.push(FieldError::new(name, "length", "at most 256 characters"));
            }
        }
        if let (Some(s), Some(u)) = (self.since, self.until)
            && s > u
        {
            errors.push(FieldError::new(
                "since",
                "range",
                "must not be after `until`",
            ));
        }
        if !errors.is_empty() {
            return Err(Problem::validation(errors));
        }
        Ok(Filter {
            query: self,
            limit,
            before,
        })
    }
}

/// One page of this service's records, newest first.
pub async fn list(
    db: &DatabaseConnection,
    service: &str,
    f: &Filter,
) -> Result<Vec<AuditRecord>, DbErr> {
    let q = &f.query;
    let mut find = Entity::find();
    if let Some(e) = &q.event {
        find = find.filter(Column::Event.eq(e.as_str()));
    }
    if let Some(a) = q.actor {
        find = find.filter(Column::Actor.eq(a));
    }
    if let Some(s) = &q.subject {
        find = find.filter(Column::Subject.eq(s.as_str()));
    }
    if let Some(s) = q.since {
        find = find.filter(Column::At.gte(s));
    }
    if let Some(u) = q.until {
        find = find.filter(Column::At.lt(u));
    }
    if let Some(c) = f.before
        && let Some(at) = DateTime::from_timestamp_micros(c.at_us)
    {
        find = find.filter(
            Condition::any().add(Column::At.lt(at)).add(
                Condition::all()
                    .add(Column::At.eq(at))
                    .add(Column::Id.lt(c.id)),
            ),
        );
    }
    let rows = find
        .order_by_desc(Column::At)
        .order_by_desc(Column::Id)
        .limit(f.limit)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|m| AuditRecord {
            id: m.id,
            at: m.at,
            service: service.to_owned(),
            event: m.event,
            actor: m.actor,
            subject: m.subject,
            client: m.client,
            request_id: m.request_id,
            result: m.result,
            detail: m.detail,
        })
        .collect())
}

/// Merge pages of several services into one, newest first, `limit` long,
/// with the cursor of the next page.
pub fn merge(mut all: Vec<AuditRecord>, limit: u64) -> AuditPage {
    all.sort_by_key(|r| std::cmp::Reverse((r.at, r.id)));
    let more = all.len() as u64 > limit;
    all.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    AuditPage {
        next: more
            .then(|| all.last().map(|r| Cursor::of(r).encode()))
            .flatten(),
        items: all,
        missing: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::PaginatorTrait;

    fn rec(at_us: i64) -> AuditRecord {
        AuditRecord {
            id: Uuid::new_v4(),
            at: DateTime::from_timestamp_micros(at_us).unwrap_or_default(),
            service: "gateway".into(),
            event: "e".into(),
            actor: None,
            subject: None,
            client: None,
            request_id: None,
            result: "success".into(),
            detail: None,
        }
    }

    #[test]
    fn pages_merge_newest_first_and_the_cursor_resumes_after_the_last() {
        let all: Vec<AuditRecord> = (0..7).map(|i| rec(1_000_000 + i * 10)).collect();
        let page = merge(all.clone(), 3);
        let ats: Vec<i64> = page.items.iter().map(|r| r.at.timestamp_micros()).collect();
        assert_eq!(ats, [1_000_060, 1_000_050, 1_000_040]);
        let c = Cursor::parse(page.next.as_deref().unwrap_or("")).unwrap_or(Cursor {
            at_us: 0,
            id: Uuid::nil(),
        });
        assert_eq!(c, Cursor::of(&page.items[2]));
        assert!(c.precedes(&all[3]) && !c.precedes(&all[4]));
        assert!(merge(all, 7).next.is_none(), "the last page has no cursor");
        assert!(Cursor::parse("nonsense").is_none());
    }

    #[actix_web::test]
    async fn a_storm_of_events_is_bounded_and_the_queue_written_in_order() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let settings = crate::db::DatabaseSettings {
            url: None,
            max_connections: 2,
            auto_migrate: true,
        };
        let db = crate::db::open(&settings, dir.path(), migrations::Service::Gateway)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let log = AuditLog::new(db.clone(), "gateway");
        // On this single-threaded runtime the writer cannot run while the
        // events arrive: the queue takes QUEUE of them, the rest are
        // counted, none waits in memory.
        let extra = 500;
        for i in 0..QUEUE + extra {
            log.record(Event::new("login.rate_limited", "refused").subject(format!("u{i}")));
        }
        assert_eq!(log.failures(), extra as u64);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let written = entity::Entity::find()
                .count(&db)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            if written == QUEUE as u64 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{written} written");
            actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let first = entity::Entity::find()
            .filter(entity::Column::Subject.eq("u0"))
            .count(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, 1);
        assert_eq!(
            log.failures(),
            extra as u64,
            "every queued record was written"
        );
    }

    #[test]
    fn stored_values_hold_no_control_character() {
        let e = Event::new("x", "failure")
            .subject("upstream a\0b")
            .client(Some("1.2.3.4\n".into()))
            .detail("line\u{1b}[31m");
        assert_eq!(e.subject.as_deref(), Some("upstream a\\u{0}b"));
        assert_eq!(e.client.as_deref(), Some("1.2.3.4\\u{a}"));
        assert_eq!(e.detail.as_deref(), Some("line\\u{1b}[31m"));
        // Escaped first, then cut on a character boundary.
        let long = Event::new("x", "failure").subject("é".repeat(200) + "\0");
        let cut = long.subject.unwrap_or_default();
        assert!(!cut.is_empty() && cut.len() <= 256, "{cut}");
        assert!(!cut.contains('\0'));
    }

    #[test]
    fn filters_are_checked() {
        let bad = AuditQuery {
            limit: Some(0),
            before: Some("x".into()),
            since: DateTime::from_timestamp(10, 0),
            until: DateTime::from_timestamp(5, 0),
            ..AuditQuery::default()
        };
        let p = bad.check().err().map(|p| p.errors.len());
        assert_eq!(p, Some(3));
        assert!(AuditQuery::default().check().is_ok());
    }
}
