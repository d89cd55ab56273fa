//! Identity providers' documents (discovery and key sets), and their token
//! endpoints for a sign-in through them, with a client of their own: no
//! redirects, a short timeout, a size limit, and the `Cache-Control`
//! lifetime the documents come with.

use std::time::Duration;

use actix_web::http::header;

thread_local! {
    /// The client for identity providers' documents, on this thread.
    static PROVIDER_CLIENT: awc::Client = awc::Client::builder()
        .disable_redirects()
        .connector(awc::Connector::new().timeout(Duration::from_secs(5)))
        .finish();
}

/// Largest discovery document or key set read.
const PROVIDER_DOCUMENT_LIMIT: usize = 1024 * 1024;

/// The `max-age` of a `Cache-Control` header (RFC 9111 section 5.2.2.1);
/// `no-store`/`no-cache` count as 0.
fn max_age(headers: &awc::http::header::HeaderMap) -> Option<u64> {
    let mut out = None;
    for v in headers.get_all(header::CACHE_CONTROL) {
        for d in v.to_str().ok()?.split(',') {
            let d = d.trim();
            if d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("no-cache") {
                return Some(0);
            }
            if let Some((k, n)) = d.split_once('=')
                && k.trim().eq_ignore_ascii_case("max-age")
            {
                out = n.trim().trim_matches('"').parse().ok();
            }
        }
    }
    out
}

/// `GET url` for an identity provider (discovery document, key set):
/// no redirects followed, the whole answer within `timeout`, at most 1 MiB.
/// The [`crate::identity::issuers::Fetch`] the gateway hands its issuers.
pub fn fetch_provider_document(
    url: String,
    timeout: Duration,
) -> futures_util::future::LocalBoxFuture<'static, Result<crate::identity::issuers::Fetched, String>>
{
    Box::pin(async move {
        let client = PROVIDER_CLIENT.with(Clone::clone);
        let work = async {
            let mut res = client
                .get(&url)
                .timeout(timeout)
                .insert_header((header::ACCEPT, "application/json"))
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if !res.status().is_success() {
                return Err(format!("{url}: status {}", res.status()));
            }
            let max_age = max_age(res.headers());
            let body = res
                .body()
                .limit(PROVIDER_DOCUMENT_LIMIT)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            Ok(crate::identity::issuers::Fetched {
                body: body.to_vec(),
                max_age,
            })
        };
        within(&url, timeout, work).await
    })
}

/// `work` (a call to `url`), or an error once `timeout` has passed.
async fn within<T>(
    url: &str,
    timeout: Duration,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    actix_web::rt::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{url}: no answer within {} ms",
                timeout.as_millis()
            ))
        })
}

/// `POST url` with a form `body` and an `Authorization` header (a
/// provider's token endpoint): no redirects followed, the whole answer
/// within `timeout`, at most 1 MiB. The status and the body, whatever the
/// status; an error says what failed on the way.
pub async fn post_provider_form(
    url: &str,
    body: String,
    authorization: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let client = PROVIDER_CLIENT.with(Clone::clone);
    let work = async {
        let mut res = client
            .post(url)
            .timeout(timeout)
            .insert_header((header::ACCEPT, "application/json"))
            .insert_header((header::AUTHORIZATION, authorization))
            .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
            .send_body(body)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = res.status().as_u16();
        let body = res
            .body()
            .limit(PROVIDER_DOCUMENT_LIMIT)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        Ok((status, body.to_vec()))
    };
    within(url, timeout, work).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    #[test]
    fn max_age_is_read_off_cache_control() {
        let h = |v: &[&str]| {
            let mut m = awc::http::header::HeaderMap::new();
            for x in v {
                m.append(header::CACHE_CONTROL, HeaderValue::from_str(x).unwrap());
            }
            m
        };
        assert_eq!(max_age(&h(&["public, max-age=300"])), Some(300));
        assert_eq!(max_age(&h(&["public", "Max-Age=\"60\""])), Some(60));
        assert_eq!(max_age(&h(&["max-age=300, no-cache"])), Some(0));
        assert_eq!(max_age(&h(&["no-store"])), Some(0));
        assert_eq!(max_age(&h(&["private"])), None);
        assert_eq!(max_age(&h(&[])), None);
    }
}
