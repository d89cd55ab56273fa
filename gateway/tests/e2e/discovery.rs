//! DNS discovery against a DNS server the test runs on a loopback port
//! (hickory-server, in process) and whose records it changes: addresses
//! added and removed while requests flow with none failing, the TTL
//! honoured, a failed lookup keeping the last set, SRV records, a name with
//! no address answered 503.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use serde_json::{Value, json};

use crate::helpers::*;

/// The test's DNS server for `test.`: records set and removed at run time.
struct Dns {
    zone: Arc<InMemoryZoneHandler<TokioRuntimeProvider>>,
    port: u16,
    task: Option<actix_web::rt::task::JoinHandle<()>>,
}

impl Dns {
    async fn start() -> Dns {
        let origin = Name::from_ascii("test.").unwrap();
        let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        );
        zone.upsert_mut(
            Record::from_rdata(
                origin.clone(),
                60,
                RData::SOA(SOA::new(
                    Name::from_ascii("ns.test.").unwrap(),
                    Name::from_ascii("admin.test.").unwrap(),
                    1,
                    3600,
                    600,
                    86400,
                    1,
                )),
            ),
            1,
        );
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.upsert(
            LowerName::new(&origin),
            vec![zone.clone() as Arc<dyn ZoneHandler>],
        );
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = udp.local_addr().unwrap().port();
        let tcp = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 65_535);
        let task = actix_web::rt::spawn(async move {
            let _ = server.block_until_done().await;
        });
        Dns {
            zone,
            port,
            task: Some(task),
        }
    }

    fn nameserver(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Make `name`'s A records exactly `ips` (none: remove them).
    async fn set_a(&self, name: &str, ips: &[Ipv4Addr], ttl: u32) {
        let name = Name::from_ascii(name).unwrap();
        let key = RrKey::new(LowerName::new(&name), RecordType::A);
        let mut records = self.zone.records_mut().await;
        if ips.is_empty() {
            records.remove(&key);
            return;
        }
        let mut set = RecordSet::with_ttl(name, RecordType::A, ttl);
        for ip in ips {
            set.add_rdata(RData::A(A::from(*ip)));
        }
        records.insert(key, Arc::new(set));
    }

    async fn set_srv(&self, name: &str, targets: &[(u16, &str)], ttl: u32) {
        let owner = Name::from_ascii(name).unwrap();
        let key = RrKey::new(LowerName::new(&owner), RecordType::SRV);
        let mut set = RecordSet::with_ttl(owner, RecordType::SRV, ttl);
        for (port, host) in targets {
            set.add_rdata(RData::SRV(SRV::new(
                10,
                5,
                *port,
                Name::from_ascii(host).unwrap(),
            )));
        }
        self.zone.records_mut().await.insert(key, Arc::new(set));
    }

    /// Stop answering (lookups fail from now on).
    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// A port free on every loopback address the test uses.
fn shared_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if (2..=5).all(|n| std::net::TcpListener::bind((ip(n), port)).is_ok()) {
            return port;
        }
    }
}

fn discovering(
    dns: &Dns,
    upstreams: Value,
    routes: Value,
) -> impl Fn(common::config::Loader) -> common::config::Loader + Clone + Send + Sync + 'static {
    let ns = dns.nameserver();
    move |l| {
        let mut l = l
            .set(
                "discovery",
                json!({"nameservers": [ns.clone()], "min_interval_secs": 1, "max_interval_secs": 60, "timeout_ms": 500}),
            )
            .set("routes", base_routes(routes.clone()));
        for (name, up) in upstreams.as_object().unwrap() {
            l = l.set(&format!("upstreams.{name}"), up.clone());
        }
        l
    }
}

async fn served_by(s: &Stack, token: &str, path: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let r = s.get(token, path).await;
        assert_eq!(r.status, 200, "{}", r.text);
        *seen
            .entry(r.body["name"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    seen
}

/// Wait (up to `secs`) until `path` is served by exactly `names`.
async fn until_served_by(s: &Stack, token: &str, path: &str, names: &[&str], secs: u64) {
    let mut seen = BTreeMap::new();
    for _ in 0..secs * 10 {
        seen = served_by(s, token, path, 8).await;
        if seen.keys().map(String::as_str).collect::<Vec<_>>() == names {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never served by {names:?}: {seen:?}");
}

#[actix_web::test]
async fn addresses_come_and_go_while_requests_flow_and_none_fails() {
    let dns = Dns::start().await;
    let port = shared_port();
    let a = Backend::start_at("a", "127.0.0.2", port).await;
    let _b = Backend::start_at("b", "127.0.0.3", port).await;
    let _c = Backend::start_at("c", "127.0.0.4", port).await;
    dns.set_a("svc.test.", &[ip(2), ip(3)], 1).await;
    let s = spawn_stack_with(discovering(
        &dns,
        json!({"pool": {
            "targets": [{"url": format!("http://svc.test:{port}"), "discover": "dns"}],
            "health_check": {"interval_secs": 1, "timeout_ms": 500, "healthy_threshold": 1, "unhealthy_threshold": 1},
        }}),
        json!([{"prefix": "/pool", "upstream": "pool", "access": "authenticated"}]),
    ))
    .await;
    let admin = admin_token(&s).await;
    // Resolved before the gateway served its first request.
    let seen = served_by(&s, &admin, "/pool/x", 6).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a", "b"], "{seen:?}");
    let ups = s.get(&admin, "/admin/upstreams").await;
    let targets = ups.body["upstreams"]["pool"]["targets"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(targets.len(), 2, "{}", ups.text);
    for t in &targets {
        assert_eq!(t["source"], "discovered", "{t}");
        assert_eq!(t["discovered_from"], format!("svc.test:{port}"));
        assert_eq!(t["health"], "healthy");
    }

    // Requests flow the whole time; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (client, url, token) = (s.client.clone(), s.url("/pool/x"), admin.clone());
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        actix_web::rt::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let r = read(client.get(&url).bearer_auth(&token)).await;
                sent.fetch_add(1, Ordering::SeqCst);
                if r.status != 200 {
                    failed.fetch_add(1, Ordering::SeqCst);
                    eprintln!("failed: {} {}", r.status, r.text);
                }
            }
        })
    };
    // c added, a removed (a still answers: it drains).
    dns.set_a("svc.test.", &[ip(3), ip(4)], 1).await;
    until_served_by(&s, &admin, "/pool/x", &["b", "c"], 10).await;
    // Only c; then a back and b gone.
    dns.set_a("svc.test.", &[ip(4)], 1).await;
    until_served_by(&s, &admin, "/pool/x", &["c"], 10).await;
    dns.set_a("svc.test.", &[ip(2), ip(4)], 1).await;
    until_served_by(&s, &admin, "/pool/x", &["a", "c"], 10).await;
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    assert!(sent.load(Ordering::SeqCst) > 20, "{sent:?}");
    assert_eq!(failed.load(Ordering::SeqCst), 0, "of {sent:?}");
    drop(a);
}

#[actix_web::test]
async fn the_ttl_is_honoured_a_failed_lookup_keeps_the_last_set_and_nothing_is_503() {
    let mut dns = Dns::start().await;
    let port = shared_port();
    let _a = Backend::start_at("a", "127.0.0.2", port).await;
    let _b = Backend::start_at("b", "127.0.0.3", port).await;
    let srv_a = Backend::start("sa").await;
    let srv_b = Backend::start("sb").await;
    dns.set_a("slow.test.", &[ip(2)], 30).await;
    dns.set_a("fast.test.", &[ip(3)], 1).await;
    dns.set_a("gone.test.", &[ip(2)], 1).await;
    dns.set_a("loopback.test.", &[ip(1)], 1).await;
    dns.set_srv(
        "_http._tcp.svc.test.",
        &[
            (srv_a.port, "loopback.test."),
            (srv_b.port, "loopback.test."),
        ],
        1,
    )
    .await;
    let upstream = |target: Value| json!({"targets": [target]});
    let s = spawn_stack_with(discovering(
        &dns,
        json!({
            "slow": upstream(json!({"url": format!("http://slow.test:{port}"), "discover": "dns"})),
            "fast": upstream(json!({"url": format!("http://fast.test:{port}"), "discover": "dns"})),
            "gone": upstream(json!({"url": format!("http://gone.test:{port}"), "discover": "dns"})),
            "srv": upstream(json!({"srv": "_http._tcp.svc.test", "discover": "dns"})),
        }),
        json!([
            {"prefix": "/slow", "upstream": "slow", "access": "authenticated"},
            {"prefix": "/fast", "upstream": "fast", "access": "authenticated"},
            {"prefix": "/gone", "upstream": "gone", "access": "authenticated"},
            {"prefix": "/srv", "upstream": "srv", "access": "authenticated"},
        ]),
    ))
    .await;
    let admin = admin_token(&s).await;
    // SRV: each target host's addresses on its own port.
    let seen = served_by(&s, &admin, "/srv/x", 6).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["sa", "sb"], "{seen:?}");

    // A TTL of 30 s: a change is not looked at before it runs out; a TTL
    // of 1 s: it is seen within about a second.
    dns.set_a("slow.test.", &[ip(3)], 30).await;
    dns.set_a("fast.test.", &[ip(2)], 1).await;
    until_served_by(&s, &admin, "/fast/x", &["a"], 5).await;
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let seen = served_by(&s, &admin, "/slow/x", 4).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a"], "{seen:?}");

    // A name that no longer has an address: an upstream without a target.
    dns.set_a("gone.test.", &[], 1).await;
    let mut status = 0;
    for _ in 0..50 {
        status = s.get(&admin, "/gone/x").await.status.as_u16();
        if status == 503 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 503);

    // The DNS server stops answering: the last addresses stay, and the
    // failures are counted.
    dns.stop();
    // Its next lookups fail (on a loaded machine, the first may come late).
    let mut metrics = String::new();
    let mut failed = None;
    for _ in 0..150 {
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        metrics = read(s.client.get(s.url("/metrics"))).await.text;
        failed = metrics
            .lines()
            .find(|l| {
                l.starts_with("gatehouse_discovery_lookups_total{")
                    && l.contains("upstream=\"fast\"")
                    && l.contains("result=\"failed\"")
            })
            .map(str::to_owned);
        if failed.is_some() {
            break;
        }
    }
    let failed = failed.unwrap_or_else(|| panic!("{metrics}"));
    let seen = served_by(&s, &admin, "/fast/x", 4).await;
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a"], "{seen:?}");
    let n: f64 = failed.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 1.0, "{failed}");
    assert!(metrics.contains("result=\"found\""), "{metrics}");
}
