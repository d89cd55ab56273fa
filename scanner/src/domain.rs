//! Parsed, always-valid values of the scanner domain. Each `parse` returns the
//! field problem that the API reports with a 422.

use common::FieldError;
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;
use utoipa::ToSchema;

/// A letter for a score: A ≥ 90, B ≥ 80, C ≥ 70, D ≥ 60, F below (see
/// `analysis` for the scoring).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, EnumIter, DeriveActiveEnum,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(1))")]
pub enum Grade {
    #[sea_orm(string_value = "A")]
    A,
    #[sea_orm(string_value = "B")]
    B,
    #[sea_orm(string_value = "C")]
    C,
    #[sea_orm(string_value = "D")]
    D,
    #[sea_orm(string_value = "F")]
    F,
}

impl Grade {
    pub fn of(score: u8) -> Self {
        match score {
            90.. => Grade::A,
            80..=89 => Grade::B,
            70..=79 => Grade::C,
            60..=69 => Grade::D,
            _ => Grade::F,
        }
    }
}

pub use common::listing::Scope;

/// Longest URL accepted, in characters, as given.
pub const URL_MAX: usize = 2048;

/// A URL a scan may start from: `http` or `https`, with a host, without
/// credentials (`user:pass@` would be sent to the target and stored in the
/// result), at most 2048 characters. The fragment is dropped (it is never
/// sent). Whether its address may be reached is the SSRF policy's call,
/// made when the scan resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl(Url);

impl TargetUrl {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let raw = raw.trim();
        if raw.is_empty() || raw.chars().count() > URL_MAX {
            return Err(FieldError::new(
                field,
                "length",
                format!("must be 1 to {URL_MAX} characters"),
            ));
        }
        let mut url = Url::parse(raw).map_err(|e| {
            FieldError::new(field, "url", format!("is not a valid absolute URL ({e})"))
        })?;
        Self::check(field, &url)?;
        url.set_fragment(None);
        Ok(Self(url))
    }

    /// The rules a URL must keep, on the way in and at every redirect.
    pub fn check(field: &str, url: &Url) -> Result<(), FieldError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FieldError::new(
                field,
                "scheme",
                format!(
                    "scheme `{}` is not allowed: only http and https",
                    url.scheme()
                ),
            ));
        }
        if url.host().is_none() {
            return Err(FieldError::new(field, "url", "has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FieldError::new(
                field,
                "credentials",
                "must not contain credentials (user:password@)",
            ));
        }
        Ok(())
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }
}

/// A validated scan request; the owner comes from the caller, never the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewScan {
    pub url: TargetUrl,
}

/// The fields `POST /scans` accepts.
const FIELDS: [&str; 1] = ["url"];

impl NewScan {
    /// Parse the JSON object of `POST /scans`, listing every problem (unknown
    /// fields too), sorted by field.
    pub fn parse(body: &Map<String, Value>) -> Result<Self, Vec<FieldError>> {
        let mut errors: Vec<FieldError> = body
            .keys()
            .filter(|k| !FIELDS.contains(&k.as_str()))
            .map(|k| FieldError::new(k.as_str(), "unknown", "is not a field of this request"))
            .collect();
        let url = match body.get("url") {
            None | Some(Value::Null) => Err(FieldError::new("url", "required", "is required")),
            Some(Value::String(s)) => TargetUrl::parse("url", s),
            Some(_) => Err(FieldError::new("url", "type", "must be a string")),
        };
        match url {
            Ok(url) if errors.is_empty() => Ok(Self { url }),
            Ok(_) => {
                errors.sort_by(|a, b| a.field.cmp(&b.field));
                Err(errors)
            }
            Err(e) => {
                errors.push(e);
                errors.sort_by(|a, b| a.field.cmp(&b.field));
                Err(errors)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn codes(v: Value) -> Vec<(String, String)> {
        let Value::Object(m) = v else {
            panic!("object expected")
        };
        match NewScan::parse(&m) {
            Ok(_) => vec![],
            Err(es) => es.into_iter().map(|e| (e.field, e.code)).collect(),
        }
    }

    fn code(url: &str) -> String {
        TargetUrl::parse("url", url).map_or_else(|e| e.code, |_| "ok".into())
    }

    #[test]
    fn urls() {
        for ok in [
            "http://example.com",
            "https://example.com:8443/a?b=c#frag",
            " https://EXAMPLE.com/ ",
            "http://2130706433/",
            "http://[::1]:8080/",
        ] {
            assert_eq!(code(ok), "ok", "{ok}");
        }
        assert_eq!(
            TargetUrl::parse("url", "https://EXAMPLE.com/a#x")
                .unwrap()
                .as_url()
                .as_str(),
            "https://example.com/a"
        );
        for (bad, c) in [
            ("ftp://example.com/", "scheme"),
            ("file:///etc/passwd", "scheme"),
            ("gopher://example.com/", "scheme"),
            ("javascript:alert(1)", "scheme"),
            ("example.com", "url"),
            ("http://", "url"),
            ("http://exa mple.com/", "url"),
            ("", "length"),
            ("http://user:pw@example.com/", "credentials"),
            ("http://user@example.com/", "credentials"),
        ] {
            assert_eq!(code(bad), c, "{bad}");
        }
        let long = format!("http://example.com/{}", "a".repeat(URL_MAX - 19));
        assert_eq!(long.len(), URL_MAX);
        assert_eq!(code(&long), "ok");
        assert_eq!(code(&format!("{long}a")), "length");
    }

    #[test]
    fn odd_ipv4_forms_are_normalised() {
        for (raw, host) in [
            ("http://2130706433/", "127.0.0.1"),
            ("http://0x7f.1/", "127.0.0.1"),
            ("http://0177.0.0.1/", "127.0.0.1"),
            ("http://127.1/", "127.0.0.1"),
            ("http://0/", "0.0.0.0"),
        ] {
            let u = TargetUrl::parse("url", raw).unwrap();
            assert_eq!(u.as_url().host_str(), Some(host), "{raw}");
        }
    }

    #[test]
    fn every_problem_is_listed_sorted() {
        assert_eq!(codes(json!({"url": "https://example.com"})), vec![]);
        let p = |f: &str, c: &str| (f.to_owned(), c.to_owned());
        assert_eq!(codes(json!({})), [p("url", "required")]);
        assert_eq!(codes(json!({"url": null})), [p("url", "required")]);
        assert_eq!(codes(json!({"url": 5})), [p("url", "type")]);
        assert_eq!(
            codes(json!({"zeta": 1, "url": "ftp://x", "owner": "me"})),
            [
                p("owner", "unknown"),
                p("url", "scheme"),
                p("zeta", "unknown")
            ]
        );
        assert_eq!(
            codes(json!({"url": "https://example.com", "user_id": "x"})),
            [p("user_id", "unknown")]
        );
    }
}
