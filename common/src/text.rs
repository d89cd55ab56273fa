//! Text input that every service refuses before any handler sees it: a query
//! string whose parameters do not decode to UTF-8 text, or hold NUL, and a
//! JSON body whose strings hold NUL (`\u0000`). PostgreSQL cannot store NUL
//! in text (a query would fail with a 500), SQLite would store it, and no
//! field of ours means it: either way the client gets a 422 naming the part.

use actix_web::HttpMessage;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::problem::{FieldError, Problem};

/// The bytes a query string's percent-encoding stands for (`+` is a space).
fn percent_decoded(raw: &str) -> Vec<u8> {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Why a query string is refused, if it is: each parameter's name and value
/// must decode to UTF-8 text without NUL.
pub fn query_problem(query: &str) -> Option<String> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        for part in [name, value] {
            let bytes = percent_decoded(part);
            let shown = String::from_utf8_lossy(&percent_decoded(name)).into_owned();
            match std::str::from_utf8(&bytes) {
                Err(_) => return Some(format!("query parameter `{shown}` is not UTF-8 text")),
                Ok(s) if s.contains('\0') => {
                    return Some(format!(
                        "query parameter `{shown}` contains a NUL character"
                    ));
                }
                Ok(_) => {}
            }
        }
    }
    None
}

/// Whether a JSON text holds a string with NUL: a `\u0000` escape (an
/// escaped backslash before it does not count). Raw NUL and invalid UTF-8
/// are already refused by the JSON parser.
pub fn json_has_nul(body: &[u8]) -> bool {
    let mut i = 0;
    while let Some(at) = body[i..].iter().position(|&c| c == b'\\') {
        let start = i + at;
        let mut run = 0;
        while body.get(start + run) == Some(&b'\\') {
            run += 1;
        }
        // An odd run ends with an escaping backslash.
        let next = start + run;
        if run % 2 == 1
            && body.get(next).is_some_and(|c| *c == b'u')
            && body.get(next + 1..next + 5).is_some_and(|h| h == b"0000")
        {
            return true;
        }
        i = next.max(start + 1);
    }
    false
}

/// The field (`item`, `address.city`, `items[2]`) whose string (or key)
/// holds NUL in a JSON text that [`json_has_nul`] flagged; `None` if it does
/// not parse (the JSON extractor refuses it then).
pub fn nul_field(body: &[u8]) -> Option<String> {
    fn walk(v: &serde_json::Value, at: &str) -> Option<String> {
        match v {
            serde_json::Value::String(s) if s.contains('\0') => Some(at.to_owned()),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(v, &format!("{at}[{i}]"))),
            serde_json::Value::Object(m) => m.iter().find_map(|(k, v)| {
                let here = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                if k.contains('\0') {
                    Some(here)
                } else {
                    walk(v, &here)
                }
            }),
            _ => None,
        }
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    walk(&v, "").map(|f| if f.is_empty() { "body".into() } else { f })
}

fn refuse(field: &str, message: String) -> Problem {
    Problem::validation(vec![FieldError::new(field, "text", message)])
}

/// Whether a request says its body is JSON (`application/json` or a
/// `+json` type), what every JSON operation requires.
pub fn is_json(headers: &header::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || m.ends_with("+json")
        })
        .unwrap_or(false)
}

/// The middleware: 422 for a query or a JSON body that is not text.
/// A JSON body is read (up to `limit` bytes, the JSON extractor's own limit
/// answers beyond) and handed on unchanged.
pub async fn refuse_non_text(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    limit: usize,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Some(why) = query_problem(req.query_string()) {
        let res = refuse("query", why).to_response();
        return Ok(req.into_response(res).map_into_right_body());
    }
    if is_json(req.headers()) {
        let mut payload = req.take_payload();
        let mut body = BytesMut::new();
        let mut rest = None;
        while let Some(chunk) = payload.next().await {
            let Ok(chunk) = chunk else {
                let res = Problem::bad_request("the request body was cut short or malformed")
                    .to_response();
                return Ok(req.into_response(res).map_into_right_body());
            };
            body.extend_from_slice(&chunk);
            if body.len() > limit {
                rest = Some(payload);
                break;
            }
        }
        if rest.is_none()
            && json_has_nul(&body)
            && let Some(field) = nul_field(&body)
        {
            let res = refuse(&field, "contains a NUL character".into()).to_response();
            return Ok(req.into_response(res).map_into_right_body());
        }
        let head: Bytes = body.freeze();
        let first =
            futures_util::stream::once(
                async move { Ok::<_, actix_web::error::PayloadError>(head) },
            );
        type Boxed = std::pin::Pin<
            Box<dyn futures_util::Stream<Item = Result<Bytes, actix_web::error::PayloadError>>>,
        >;
        let stream: Boxed = match rest {
            Some(more) => Box::pin(first.chain(more)),
            None => Box::pin(first),
        };
        req.set_payload(actix_web::dev::Payload::from(stream));
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_must_decode_to_text() {
        for ok in [
            "",
            "a=1",
            "username=al%20ice&x",
            "q=%C3%A9t%C3%A9",
            "a=%zz",
            "a=100%",
            "a=b+c",
        ] {
            assert_eq!(query_problem(ok), None, "{ok}");
        }
        for bad in [
            "username=%00",
            "a=x%00y",
            "%00=1",
            "a=%FF",
            "a=%C0%80",
            "a=%ED%A0%80",
        ] {
            assert!(query_problem(bad).is_some(), "{bad}");
        }
        assert!(
            query_problem("username=%00")
                .unwrap_or_default()
                .contains("`username`")
        );
    }

    #[test]
    fn json_strings_must_not_hold_nul() {
        assert!(json_has_nul(br#"{"a": "x\u0000y"}"#));
        assert!(json_has_nul(br#"{"a": "\\\u0000"}"#));
        assert!(
            !json_has_nul(br#"{"a": "\\u0000"}"#),
            "an escaped backslash"
        );
        assert!(!json_has_nul(br#"{"a": "\u00e9", "b": "\\"}"#));
        assert!(!json_has_nul(br#"{"a": "\u000"}"#));
        assert!(!json_has_nul(b"\\"));
        assert!(!json_has_nul(b""));
        assert_eq!(
            nul_field(br#"{"a": 1, "item": "x\u0000"}"#).as_deref(),
            Some("item")
        );
        assert_eq!(
            nul_field(br#"{"o": {"list": ["ok", "\u0000"]}}"#).as_deref(),
            Some("o.list[1]")
        );
        assert_eq!(nul_field(br#""\u0000""#).as_deref(), Some("body"));
        assert_eq!(
            nul_field(br#"{"a": "\u0000",}"#),
            None,
            "not JSON: the extractor answers"
        );
    }
}
