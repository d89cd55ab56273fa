//! The result of one scan, as stored (the `result` JSON column) and returned.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::analysis::{self, Banner, CookieCheck, HeaderChecks};
use crate::domain::{Grade, TargetUrl};
use crate::probe::{Failure, Hop, Probe};

/// What a scan found. When the target could not be reached, `error` says why,
/// `status_code` and `headers` are null and the score is 0 (grade F).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Report {
    /// The URL asked for, normalised (no fragment).
    pub url: String,
    /// Where the redirect chain ended: the final response's URL, or the URL
    /// that could not be reached.
    pub final_url: String,
    /// The final response's status; null when none arrived.
    pub status_code: Option<u16>,
    /// Milliseconds from the start of the scan to the final response's
    /// head (DNS and redirects included), or to the failure.
    pub response_time_ms: u64,
    /// Whether the final response came over TLS (its URL is `https`).
    pub tls: bool,
    /// The redirects followed, in order (at most `scan.max_redirects`).
    pub redirects: Vec<Hop>,
    /// The security headers of the final response; null when none arrived.
    pub headers: Option<HeaderChecks>,
    /// Every `Set-Cookie` of the final response (at most 50).
    pub cookies: Vec<CookieCheck>,
    /// Software and version banners the final response leaks.
    pub banners: Vec<Banner>,
    /// Bytes of the final body read (at most `scan.max_body_bytes`).
    pub body_bytes: u64,
    /// The body was cut at `scan.max_body_bytes` or at the deadline.
    pub body_truncated: bool,
    /// 0-100 (see the scoring table in the API description).
    #[schema(minimum = 0, maximum = 100)]
    pub score: u8,
    pub grade: Grade,
    /// Why the target could not be reached (`connection refused`, `timed out
    /// after 10000 ms`, `DNS lookup of … failed`, `too many redirects …`).
    pub error: Option<String>,
}

impl Report {
    /// The report of a probe, or the refusal (a 422, nothing recorded).
    pub fn of(target: &TargetUrl, probe: Probe) -> Result<Self, String> {
        let mut report = Report {
            url: target.as_url().to_string(),
            final_url: probe.last_url.to_string(),
            status_code: None,
            response_time_ms: millis(probe.elapsed),
            tls: false,
            redirects: probe.redirects,
            headers: None,
            cookies: Vec::new(),
            banners: Vec::new(),
            body_bytes: 0,
            body_truncated: false,
            score: 0,
            grade: Grade::F,
            error: None,
        };
        match probe.result {
            Err(Failure::Refused(why)) => return Err(why),
            Err(Failure::Unreachable(why)) => report.error = Some(why),
            Ok(f) => {
                let https = f.final_url.scheme() == "https";
                let findings = analysis::analyse(&f.headers, https);
                let (score, grade) = analysis::score(&findings, https);
                report.final_url = f.final_url.to_string();
                report.status_code = Some(f.status);
                report.response_time_ms = millis(f.elapsed);
                report.tls = https;
                report.headers = Some(findings.headers);
                report.cookies = findings.cookies;
                report.banners = findings.banners;
                report.body_bytes = f.body_bytes;
                report.body_truncated = f.body_truncated;
                report.score = score;
                report.grade = grade;
            }
        }
        Ok(report)
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
