//! A response as the black-box tests read it, and the assertions every
//! service's tests make on it.

use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

/// A response, already read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

/// Send and read; every response must carry the request id.
pub async fn read(rb: reqwest::RequestBuilder) -> Resp {
    let res = rb.send().await.expect("request sent");
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    assert!(
        headers.get("x-request-id").is_some(),
        "every response carries the request id"
    );
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        text,
    }
}

impl Resp {
    /// The `id` of the body.
    pub fn id(&self) -> Uuid {
        Uuid::parse_str(self.body["id"].as_str().expect("id")).expect("uuid")
    }

    /// Assert a status, showing the body when it differs.
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        &self.body
    }

    /// Assert a problem+json error of the given status.
    pub fn problem(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(
            self.headers["content-type"], "application/problem+json",
            "{}",
            self.text
        );
        assert_eq!(self.body["status"], status);
        assert!(
            self.body["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:gatehouse:problem:")
        );
        assert!(
            self.body["request_id"].is_string(),
            "problem has the request id: {}",
            self.text
        );
        &self.body
    }

    /// `(field, code)` of each entry of a 422's error list (asserts the 422).
    pub fn field_codes(&self) -> Vec<(String, String)> {
        self.problem(422);
        self.body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors list: {}", self.text))
            .iter()
            .map(|e| {
                (
                    e["field"].as_str().unwrap().to_owned(),
                    e["code"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// The `field` names of a 422's error list (asserts the 422).
    pub fn fields(&self) -> Vec<String> {
        self.field_codes().into_iter().map(|(f, _)| f).collect()
    }
}

/// The Prometheus text `rb` answers (a `GET /metrics`).
pub async fn scrape(rb: reqwest::RequestBuilder) -> String {
    let res = rb.send().await.unwrap();
    assert_eq!(res.status(), 200, "the metrics endpoint answered");
    res.text().await.unwrap()
}

/// The value of the unlabelled sample `name` in a scrape; panics naming it
/// when it is missing.
pub fn sample(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {scrape}"))
        .parse()
        .unwrap()
}
