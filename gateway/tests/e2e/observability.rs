//! The shipped dashboard (`deploy/grafana/gatehouse.json`) and alert rules
//! (`deploy/prometheus/alerts.yml`) against the real thing: promtool checks
//! and unit-tests the rules, every metric (and every label value they match
//! on) exists in a real `/metrics` scrape, and a real Prometheus (Debian's,
//! installed by scripts/install-test-deps) scrapes the gateway over HTTPS,
//! loads the rules and answers every dashboard query.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::tls::https_client;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file)
}

fn tool(name: &str) -> PathBuf {
    let path = PathBuf::from("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{name} is installed by scripts/install-test-deps (Debian's prometheus)"
    );
    path
}

#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() {
    let rules = deploy("prometheus/alerts.yml");
    let out = Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("SUCCESS: 11 rules found"), "{said}");
    let out = Command::new(tool("promtool"))
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(deploy("prometheus"))
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("SUCCESS"), "{said}");
    // Every alert has a unit test that fires it.
    let tests = std::fs::read_to_string(deploy("prometheus/alerts.test.yml")).unwrap();
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    for alert in rules_text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        let fired = tests
            .split("alertname: ")
            .skip(1)
            .any(|t| t.starts_with(alert) && t.contains("exp_labels"));
        assert!(fired, "no test fires {alert}");
    }
}

/// Every `gatehouse_*` metric named in `text`, with the label values it
/// is matched on by equality (`label="value"`).
fn metrics_used(text: &str) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let mut used: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut rest = text;
    while let Some(i) = rest.find("gatehouse_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].to_owned();
        let after = &tail[end..];
        let matchers = used.entry(name).or_default();
        if let Some(inner) = after.strip_prefix('{').and_then(|a| a.split('}').next()) {
            for m in inner.split(',') {
                if let Some((label, value)) = m.split_once('=')
                    && !label.ends_with('!')
                    && !value.starts_with('~')
                {
                    let value = value.trim().trim_matches('"');
                    if !value.contains('$') {
                        matchers.insert((label.trim().to_owned(), value.to_owned()));
                    }
                }
            }
        }
        rest = &tail[end..];
    }
    used
}

/// The dashboard's queries, as Prometheus can run them.
fn dashboard_queries() -> Vec<(String, String)> {
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/gatehouse.json")).unwrap())
            .unwrap();
    assert_eq!(dash["uid"], "gatehouse-gateway");
    let mut queries = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{expr}");
            queries.push((
                panel["title"].as_str().unwrap().to_owned(),
                expr.replace("$__rate_interval", "15s")
                    .replace("$route", ".*"),
            ));
        }
    }
    assert!(queries.len() >= 20, "{queries:?}");
    queries
}

/// Samples of a scrape: name -> label sets.
fn samples(scrape: &str) -> BTreeMap<String, Vec<BTreeSet<(String, String)>>> {
    let mut out: BTreeMap<String, Vec<BTreeSet<(String, String)>>> = BTreeMap::new();
    for line in scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels: BTreeSet<(String, String)> = line[end..]
            .strip_prefix('{')
            .and_then(|l| l.split('}').next())
            .map(|inner| {
                inner
                    .split("\",")
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        out.entry(line[..end].to_owned()).or_default().push(labels);
    }
    out
}

struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn promql(client: &reqwest::Client, base: &str, query: &str) -> Value {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", query)
        .finish();
    let r = read(
        client
            .post(format!("{base}/api/v1/query"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
    )
    .await;
    assert_eq!(r.status, 200, "{query}: {}", r.text);
    assert_eq!(r.body["status"], "success", "{query}: {}", r.text);
    r.body["data"]["result"].clone()
}

#[actix_web::test]
async fn the_dashboard_and_the_rules_run_on_a_real_scrape_of_the_gateway() {
    let dead = format!("http://127.0.0.1:{}", testkit::free_port());
    let prefix = format!("obs-{}", uuid::Uuid::new_v4());
    let redis = with_redis(prefix);
    let s = spawn_stack_with(move |l| {
        redis(l)
            .set("tls.mode", "dev")
            .set("metrics.bearer_token", "scrape-token")
            .set(
                "upstreams.dead",
                json!({"targets": [dead.clone()], "health_check": {"enabled": false}}),
            )
            .set(
                "routes",
                base_routes(json!([
                    {"prefix": "/cached", "upstream": "echo", "access": "public",
                     "cache": {"ttl_secs": 30}},
                    {"prefix": "/limited", "upstream": "echo", "access": "public",
                     "rate_limit": {"rate": "1/m", "burst": 1, "by": "ip"}},
                    {"prefix": "/dead", "upstream": "dead", "access": "public"},
                ])),
            )
    })
    .await;
    let port: u16 = s.gw.rsplit(':').next().unwrap().parse().unwrap();
    let ca_file = s.env.data_dir().join("keys/dev-tls.crt.pem");
    let ca = std::fs::read_to_string(&ca_file).unwrap();
    let client = https_client(&ca, false, true);
    let base = format!("https://localhost:{port}");
    let traffic = async || {
        let login = |password: &str| {
            client
                .post(format!("{base}/api/login"))
                .json(&json!({"username": "admin", "password": password}))
        };
        let r = read(login("wrong-password-123")).await;
        assert_eq!(r.status, 401, "{}", r.text);
        let r = read(login(ADMIN_PASSWORD)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let token = r.body["access_token"].as_str().unwrap().to_owned();
        for _ in 0..3 {
            let r = read(client.get(format!("{base}/api/echo/x")).bearer_auth(&token)).await;
            assert_eq!(r.status, 200, "{}", r.text);
        }
        for _ in 0..2 {
            read(client.get(format!("{base}/cached/x"))).await;
            read(client.get(format!("{base}/limited/x"))).await;
        }
        let r = read(client.get(format!("{base}/dead/x"))).await;
        assert!(r.status.is_server_error(), "{}", r.text);
    };
    traffic().await;

    // What the dashboard and the rules name is in the scrape, with the
    // label values they match on.
    let scrape = read(
        client
            .get(format!("{base}/metrics"))
            .bearer_auth("scrape-token"),
    )
    .await;
    assert_eq!(scrape.status, 200);
    let have = samples(&scrape.text);
    let dashboard: Vec<String> = dashboard_queries().into_iter().map(|(_, q)| q).collect();
    let dashboard = dashboard.join("\n");
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    for (source, text) in [("dashboard", &dashboard), ("alert rules", &rules)] {
        let used = metrics_used(text);
        assert!(used.len() >= 8, "{source}: {used:?}");
        for (name, matchers) in used {
            let series = have
                .get(&name)
                .unwrap_or_else(|| panic!("{source} uses {name}, which /metrics does not have"));
            for (label, value) in matchers {
                assert!(
                    series
                        .iter()
                        .any(|l| l.contains(&(label.clone(), value.clone()))),
                    "{source} matches {name}{{{label}=\"{value}\"}}, never in /metrics: {series:?}"
                );
            }
        }
    }

    // A real Prometheus scrapes it over HTTPS with the token and loads the
    // rules.
    let dir = tempfile::tempdir().unwrap();
    let web = testkit::free_port();
    let config = format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {rules}
scrape_configs:
  - job_name: gatehouse
    scheme: https
    authorization:
      credentials: scrape-token
    tls_config:
      ca_file: {ca}
      server_name: localhost
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"#,
        rules = deploy("prometheus/alerts.yml").display(),
        ca = ca_file.display(),
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let _prometheus = Prometheus(
        Command::new(tool("prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let api = format!("http://127.0.0.1:{web}");
    let plain = testkit::client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = match plain
            .post(format!("{api}/api/v1/query"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("query=up%7Bjob%3D%22gatehouse%22%7D")
            .send()
            .await
        {
            Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if up["data"]["result"][0]["value"][1] == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the gateway: {up}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let r = read(plain.get(format!("{api}/api/v1/rules"))).await;
    let loaded: Vec<&Value> = r.body["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(loaded.len(), 11, "{}", r.text);
    assert!(loaded.iter().all(|r| r["health"] == "ok"), "{}", r.text);

    // Traffic while it scrapes, then every dashboard query answers, and the
    // main ones with data.
    traffic().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rate = promql(
            &plain,
            &api,
            "sum by (route) (rate(gatehouse_requests_total{route=\"/api/echo\"}[15s]))",
        )
        .await;
        if rate[0]["value"][1]
            .as_str()
            .is_some_and(|v| v.parse::<f64>().unwrap_or(0.0) > 0.0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "no request rate: {rate}");
        traffic().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut answered = BTreeMap::new();
    for (title, query) in dashboard_queries() {
        let result = promql(&plain, &api, &query).await;
        answered.insert(title, result);
    }
    for title in [
        "Request rate by route",
        "Latency p99 by route",
        "Targets in rotation",
        "Token verification cache hit ratio",
        "Logins by outcome",
        "Redis in use",
        "Certificate expires in",
    ] {
        let result = &answered[title];
        assert!(
            result.as_array().is_some_and(|r| !r.is_empty()),
            "{title}: no data: {result}"
        );
    }
    let in_rotation = answered["Targets in rotation"].as_array().unwrap();
    assert!(
        in_rotation
            .iter()
            .any(|s| s["metric"]["upstream"] == "echo" && s["value"][1] == "1"),
        "{in_rotation:?}"
    );
    let expires = answered["Certificate expires in"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse::<f64>()
        .unwrap();
    assert!(expires > 86_400.0, "{expires}");
}
