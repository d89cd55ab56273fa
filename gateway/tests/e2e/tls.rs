//! HTTPS at the gateway: HTTP/2 and HTTP/1.1 by ALPN on the same routes,
//! HSTS, the plain listener that only redirects, certificates rotated in
//! place under load with no failed request, a bad certificate refused on
//! reload with the old one serving on, TLS 1.1 refused, and the
//! development certificate.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Version;
use serde_json::json;
use testkit::pki::TestCa;

use crate::helpers::*;

fn port_of(s: &Stack) -> u16 {
    s.gw.rsplit(':').next().unwrap().parse().unwrap()
}

/// A client that trusts only `ca_pem`, keeping connections or not.
pub(crate) fn https_client(ca_pem: &str, http1: bool, pooled: bool) -> reqwest::Client {
    let mut b = testkit::client_builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .tls_info(true)
        .redirect(reqwest::redirect::Policy::none());
    if http1 {
        b = b.http1_only();
    }
    if !pooled {
        b = b.pool_max_idle_per_host(0);
    }
    b.build().unwrap()
}

async fn login(c: &reqwest::Client, base: &str) -> String {
    let r = read(
        c.post(format!("{base}/api/login"))
            .json(&json!({"username": "admin", "password": ADMIN_PASSWORD})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["access_token"].as_str().unwrap().to_owned()
}

/// The DER of the certificate the server presented.
fn peer_certificate(res: &reqwest::Response) -> Vec<u8> {
    res.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .unwrap()
        .to_vec()
}

#[actix_web::test]
async fn https_speaks_http2_and_http1_with_hsts_and_plain_http_only_redirects() {
    let ca = TestCa::new("gatehouse test CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]).write(dir.path(), "gw");
    let redirect = testkit::free_port();
    let s = spawn_stack_with(move |l| {
        l.set(
            "tls",
            json!({"mode": "files", "cert_file": cert, "key_file": key,
                   "hsts": {"max_age_secs": 31536000, "include_subdomains": true},
                   "redirect_listen": format!("127.0.0.1:{redirect}")}),
        )
    })
    .await;
    let port = port_of(&s);
    let base = format!("https://localhost:{port}");
    let h2 = https_client(&ca.pem(), false, true);
    let h1 = https_client(&ca.pem(), true, true);
    for (client, version) in [(&h2, Version::HTTP_2), (&h1, Version::HTTP_11)] {
        let res = client.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(res.version(), version);
        assert_eq!(
            res.headers()["strict-transport-security"],
            "max-age=31536000; includeSubDomains"
        );
        // The same routes, limits and headers on both.
        let token = login(client, &base).await;
        let r = read(client.get(format!("{base}/api/echo")).bearer_auth(&token)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        // A proxied answer (past the App, see edge::shortcut) carries it too.
        assert_eq!(
            r.headers["strict-transport-security"],
            "max-age=31536000; includeSubDomains"
        );
        assert_eq!(r.body["headers"]["x-forwarded-proto"], "https");
        assert!(r.body["headers"]["request-user-id"].is_string());
        let r = read(client.get(format!("{base}/api/echo"))).await;
        r.invalid_token();
    }
    // Plain HTTP on the main port is not served.
    assert!(
        s.client
            .get(format!("{}/healthz", s.gw))
            .send()
            .await
            .is_err()
    );
    // The plain listener: a 308 to the same host, path and query on HTTPS,
    // and /healthz for probes; nothing else.
    let r = read(
        s.client
            .post(format!("http://127.0.0.1:{redirect}/api/echo/a?b=c"))
            .body("x"),
    )
    .await;
    assert_eq!(r.status, 308, "{}", r.text);
    assert_eq!(
        r.headers["location"],
        format!("https://127.0.0.1:{port}/api/echo/a?b=c").as_str()
    );
    assert!(r.headers.get("strict-transport-security").is_none());
    let r = read(s.client.get(format!("http://127.0.0.1:{redirect}/healthz"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[actix_web::test]
async fn certificates_rotate_in_place_under_load_and_a_bad_one_is_refused() {
    let ca = TestCa::new("gatehouse rotation CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf(&["localhost"]).write(dir.path(), "gw");
    let (c2, k2) = (cert.clone(), key.clone());
    let s = spawn_stack_with(move |l| {
        l.set(
            "tls",
            json!({"mode": "files", "cert_file": c2, "key_file": k2, "watch_secs": 1}),
        )
    })
    .await;
    let base = format!("https://localhost:{}", port_of(&s));
    // A new connection (and handshake) per request.
    let fresh = https_client(&ca.pem(), true, false);
    // What a brand-new client is shown (a client of its own: no session
    // to resume, so the server presents its certificate).
    let shown = || async {
        let c = https_client(&ca.pem(), true, false);
        peer_certificate(&c.get(format!("{base}/healthz")).send().await.unwrap())
    };
    let first = shown().await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            let (client, url) = (fresh.clone(), format!("{base}/healthz"));
            actix_web::rt::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::SeqCst),
                        _ => failed.fetch_add(1, Ordering::SeqCst),
                    };
                }
            })
        })
        .collect();
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    // cert-manager style: the files are replaced in place.
    let next = ca.leaf(&["localhost"]);
    std::fs::write(&key, &next.key_pem).unwrap();
    std::fs::write(&cert, &next.chain_pem).unwrap();
    let mut rotated = None;
    for _ in 0..50 {
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        let now = shown().await;
        if now != first {
            rotated = Some(now);
            break;
        }
    }
    let rotated = rotated.expect("the new certificate is served within the watch interval");
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;

    // A bad certificate: refused on reload, with the reason; the current
    // one keeps serving, through reloads and the file watch alike.
    let admin = login(&fresh, &base).await;
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let r = read(
        fresh
            .post(format!("{base}/admin/reload"))
            .bearer_auth(&admin),
    )
    .await;
    assert!(
        r.status.is_client_error() || r.status.is_server_error(),
        "{}",
        r.text
    );
    assert!(r.text.contains("tls"), "{}", r.text);
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.await.unwrap();
    }
    assert_eq!(shown().await, rotated);
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "failed requests during the rotation"
    );
    assert!(
        ok.load(Ordering::SeqCst) > 20,
        "{} requests",
        ok.load(Ordering::SeqCst)
    );
}

/// A ClientHello offering only `version` (TLS 1.2's form: no
/// supported_versions extension), with an ECDHE-ECDSA AES-GCM suite, x25519
/// and ecdsa_secp256r1_sha256, written by hand: no client library here
/// will still send a TLS 1.1 one.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    let mut body = version.to_vec();
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x02, 0xc0, 0x2b]); // ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let extensions: &[u8] = &[
        0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d, // supported_groups: x25519
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats: uncompressed
        0x00, 0x0d, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03, // signature_algorithms
    ];
    body.extend_from_slice(&u16::try_from(extensions.len()).unwrap().to_be_bytes());
    body.extend_from_slice(extensions);
    let mut hs = vec![0x01, 0x00];
    hs.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend_from_slice(&u16::try_from(hs.len()).unwrap().to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// The first record header and two bytes the server answers `hello` with.
async fn first_answer(port: u16, hello: Vec<u8>) -> [u8; 7] {
    actix_web::rt::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tcp.write_all(&hello).unwrap();
        let mut buf = [0u8; 7];
        tcp.read_exact(&mut buf).unwrap();
        buf
    })
    .await
    .unwrap()
}

#[actix_web::test]
async fn tls_1_1_is_refused_and_the_development_certificate_serves_localhost() {
    let s = spawn_stack_with(|l| l.set("tls.mode", "dev")).await;
    let port = port_of(&s);
    let keys = s.env.data_dir().join("keys");
    let ca = std::fs::read_to_string(keys.join("dev-tls.crt.pem")).unwrap();
    assert!(Path::new(&keys.join("dev-tls.key.pem")).exists());
    let client = https_client(&ca, false, true);
    let res = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), Version::HTTP_2);
    let metrics =
        testkit::http::scrape(client.get(format!("https://localhost:{port}/metrics"))).await;
    let expiry = testkit::http::sample(
        &metrics,
        "gatehouse_tls_certificate_expiry_timestamp_seconds",
    );
    assert!(
        expiry > (chrono::Utc::now().timestamp() + 86_400) as f64,
        "{expiry}"
    );

    // The same hello as TLS 1.2 gets a ServerHello (a handshake record);
    // as TLS 1.1, a fatal protocol_version alert (RFC 8446 section 6.2).
    let answer = first_answer(port, client_hello([0x03, 0x03])).await;
    assert_eq!((answer[0], answer[5]), (0x16, 0x02), "{answer:?}");
    let answer = first_answer(port, client_hello([0x03, 0x02])).await;
    assert_eq!(answer[0], 0x15, "{answer:?}");
    assert_eq!(&answer[5..], &[0x02, 70], "{answer:?}");
}

/// A backend over HTTPS with `leaf`; with `client_ca`, it requires a client
/// certificate that CA signed. It answers the HTTP version it was spoken
/// to with; `/{any}/ws` is the WebSocket echo.
async fn https_backend(leaf: &testkit::pki::Leaf, client_ca: Option<&TestCa>) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.pem().as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .unwrap(),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = actix_web::HttpServer::new(|| {
        actix_web::App::new()
            .app_data(actix_web::web::Data::new(
                std::sync::atomic::AtomicUsize::new(0),
            ))
            .route("/{prefix}/ws", actix_web::web::get().to(ws_echo))
            .default_service(actix_web::web::to(
                |req: actix_web::HttpRequest| async move {
                    actix_web::HttpResponse::Ok()
                        .json(json!({"version": format!("{:?}", req.version())}))
                },
            ))
    })
    .workers(1)
    .listen_rustls_0_23(listener, config)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    port
}

#[actix_web::test]
async fn https_upstreams_are_verified_by_their_ca_and_name_and_can_get_a_client_certificate() {
    let server_ca = TestCa::new("services CA");
    let client_ca = TestCa::new("gateway clients CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("services-ca.pem");
    std::fs::write(&ca_file, server_ca.pem()).unwrap();
    let (client_cert, client_key) = client_ca.leaf(&["gateway"]).write(dir.path(), "client");
    let plain = https_backend(&server_ca.leaf(&["localhost"]), None).await;
    let mtls = https_backend(&server_ca.leaf(&["localhost"]), Some(&client_ca)).await;
    let up = |url: String, tls: serde_json::Value| {
        json!({"targets": [url], "tls": tls, "retries": 0,
               "health_check": {"enabled": false}})
    };
    let upstreams = json!({
        "verified": up(format!("https://localhost:{plain}"), json!({"ca_file": ca_file})),
        "public_roots": up(format!("https://localhost:{plain}"), json!({})),
        "wrong_name": up(format!("https://127.0.0.1:{plain}"), json!({"ca_file": ca_file})),
        "mtls": up(format!("https://localhost:{mtls}"),
            json!({"ca_file": ca_file, "client_cert_file": client_cert, "client_key_file": client_key})),
        "mtls_without_cert": up(format!("https://localhost:{mtls}"), json!({"ca_file": ca_file})),
    });
    let routes: Vec<serde_json::Value> = upstreams
        .as_object()
        .unwrap()
        .keys()
        .map(|name| json!({"prefix": format!("/{name}"), "upstream": name, "access": "public"}))
        .collect();
    let s = spawn_stack_with(move |mut l| {
        for (name, spec) in upstreams.as_object().unwrap() {
            l = l.set(&format!("upstreams.{name}"), spec.clone());
        }
        l.set("routes", base_routes(json!(routes.clone())))
    })
    .await;
    for (path, status) in [
        ("/verified", 200),
        ("/mtls", 200),
        ("/public_roots", 502),
        ("/wrong_name", 502),
        ("/mtls_without_cert", 502),
    ] {
        let r = read(s.client.get(s.url(path))).await;
        assert_eq!(r.status.as_u16(), status, "{path}: {}", r.text);
        if status == 200 {
            // HTTP/2, negotiated by ALPN.
            assert_eq!(r.body["version"], "HTTP/2.0", "{path}");
        }
        // A WebSocket goes the same way, verified the same (over HTTP/1.1,
        // the only way to upgrade).
        let ws = awc::Client::new()
            .ws(format!(
                "{}{path}/ws",
                s.url("").replacen("http://", "ws://", 1)
            ))
            .connect()
            .await;
        match ws {
            Ok((_, mut sock)) => {
                use futures_util::{SinkExt, StreamExt};
                assert_eq!(status, 200, "{path}: upgraded");
                sock.send(awc::ws::Message::Text("over tls".into()))
                    .await
                    .unwrap();
                assert_eq!(
                    sock.next().await.unwrap().unwrap(),
                    awc::ws::Frame::Text("over tls".into())
                );
            }
            Err(awc::error::WsClientError::InvalidResponseStatus(st)) => {
                assert_eq!(st.as_u16(), status, "{path}")
            }
            Err(e) => panic!("{path}: {e}"),
        }
    }
}

fn identity_client(server_ca: &TestCa, leaf: Option<&testkit::pki::Leaf>) -> reqwest::Client {
    let mut b = testkit::client_builder()
        .tls_certs_only([reqwest::Certificate::from_pem(server_ca.pem().as_bytes()).unwrap()]);
    if let Some(l) = leaf {
        let pem = format!("{}{}", l.chain_pem, l.key_pem);
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

#[actix_web::test]
async fn client_certificates_are_verified_at_the_listener_and_their_subject_forwarded() {
    let server_ca = TestCa::new("gateway server CA");
    let clients_ca = TestCa::new("devices CA");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = server_ca.leaf(&["localhost"]).write(dir.path(), "gw");
    let clients_file = dir.path().join("devices-ca.pem");
    std::fs::write(&clients_file, clients_ca.pem()).unwrap();
    let device = clients_ca.leaf(&["alice-device"]);
    let stranger = TestCa::new("someone else").leaf(&["mallory-device"]);
    let stack = |auth: &'static str| {
        let (cert, key, ca) = (cert.clone(), key.clone(), clients_file.clone());
        spawn_stack_with(move |l| {
            l.set(
                "tls",
                json!({"mode": "files", "cert_file": cert, "key_file": key,
                       "client_ca_file": ca, "client_auth": auth}),
            )
            .set(
                "routes",
                base_routes(json!([
                    {"prefix": "/api/device", "upstream": "echo",
                     "access": "authenticated", "client_cert": true},
                    {"prefix": "/api/alice-only", "upstream": "echo",
                     "access": "authenticated", "client_cert": {"subjects": ["cn=alice-device"]}},
                    {"prefix": "/api/billing-only", "upstream": "echo",
                     "access": "authenticated", "client_cert": {"subjects": ["CN=billing-service"]}},
                ])),
            )
        })
    };

    // Optional: verified when presented; a route can insist.
    let s = stack("optional").await;
    let base = format!("https://localhost:{}", port_of(&s));
    let with = identity_client(&server_ca, Some(&device));
    let without = identity_client(&server_ca, None);
    let token = login(&without, &base).await;
    let r = read(
        with.get(format!("{base}/api/device"))
            .bearer_auth(&token)
            .header("request-client-cert-subject", "CN=root"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let subject = r.body["headers"]["request-client-cert-subject"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(subject.contains("CN=alice-device"), "{subject}");
    // Covered by the proof, as a service checks it.
    let covered = proof_covered(&s, "echo", &r.body["headers"]);
    assert_eq!(covered["request-client-cert-subject"], subject);
    // A route that admits certain subjects: this one, not another.
    let r = read(
        with.get(format!("{base}/api/alice-only"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = read(
        with.get(format!("{base}/api/billing-only"))
            .bearer_auth(&token),
    )
    .await;
    assert!(
        r.problem(403)["detail"]
            .as_str()
            .unwrap()
            .contains("subject"),
        "{}",
        r.text
    );
    let r = read(
        without
            .get(format!("{base}/api/alice-only"))
            .bearer_auth(&token),
    )
    .await;
    r.problem(403);
    // No certificate: the route refuses; others serve, and a subject the
    // client made up never reaches a service.
    let r = read(
        without
            .get(format!("{base}/api/device"))
            .bearer_auth(&token),
    )
    .await;
    r.problem(403);
    let r = read(
        without
            .get(format!("{base}/api/echo"))
            .bearer_auth(&token)
            .header("request-client-cert-subject", "CN=root"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body["headers"]
            .get("request-client-cert-subject")
            .is_none()
    );
    // A certificate from a CA the listener does not trust: no handshake.
    let foreign = identity_client(&server_ca, Some(&stranger));
    assert!(foreign.get(format!("{base}/healthz")).send().await.is_err());

    // Required: nobody without a verified certificate gets a handshake.
    let s = stack("required").await;
    let base = format!("https://localhost:{}", port_of(&s));
    assert!(without.get(format!("{base}/healthz")).send().await.is_err());
    assert!(foreign.get(format!("{base}/healthz")).send().await.is_err());
    let res = with.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}
