//! Request and response bodies of the scanner API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::report::Report;
use crate::service::Scan;

/// A recorded scan: who asked, which replica ran it, and what it found.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScanResponse {
    pub id: Uuid,
    /// The owner: the user who asked for the scan.
    pub user_id: Uuid,
    /// The scanner replica that ran it (`scanner1`, `scanner2`, ...).
    pub instance: String,
    pub created_at: DateTime<Utc>,
    #[serde(flatten)]
    pub report: Report,
}

impl From<Scan> for ScanResponse {
    fn from(s: Scan) -> Self {
        Self {
            id: s.id,
            user_id: s.user_id,
            instance: s.instance,
            created_at: s.created_at,
            report: s.report,
        }
    }
}

/// One page of scans.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScanList {
    /// Newest first.
    pub items: Vec<ScanResponse>,
    /// Scans matching the query, over all pages.
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

pub use common::listing::ListQuery;

/// `POST /scans`. The owner is the caller; the body cannot name one.
///
/// This type documents the body. The handler reads the raw JSON object and
/// `domain::NewScan::parse` checks it, so that a missing, unknown or
/// wrongly-typed field is listed in one 422 with every other problem.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://example.com/"}))]
pub struct CreateScanRequest {
    /// An absolute `http` or `https` URL without credentials, at most 2048
    /// characters. Its addresses must pass the SSRF policy.
    #[schema(min_length = 1, max_length = 2048, example = "https://example.com/")]
    pub url: String,
}
