//! The SSRF policy with the shipped defaults (no allowed targets): every
//! refused address class, however it is written, is a 422 naming the address
//! and why, and leaves no record.

use crate::helpers::*;

#[actix_web::test]
async fn every_refused_address_class_is_a_422_naming_it() {
    let app = spawn_app().await;
    for (url, why) in [
        ("http://127.0.0.1/", "target address 127.0.0.1 is loopback"),
        (
            "http://127.8.9.10:8080/x",
            "target address 127.8.9.10 is loopback",
        ),
        ("http://[::1]/", "target address ::1 is loopback"),
        (
            "http://[::ffff:127.0.0.1]/",
            "target address ::ffff:127.0.0.1 is loopback (IPv4-mapped 127.0.0.1)",
        ),
        (
            "http://[::ffff:a00:1]/",
            "target address ::ffff:10.0.0.1 is private (IPv4-mapped 10.0.0.1)",
        ),
        ("http://10.1.2.3/", "target address 10.1.2.3 is private"),
        ("http://172.16.0.1/", "target address 172.16.0.1 is private"),
        (
            "http://172.31.255.254/",
            "target address 172.31.255.254 is private",
        ),
        (
            "http://192.168.0.1/",
            "target address 192.168.0.1 is private",
        ),
        (
            "http://169.254.169.254/latest/meta-data/",
            "target address 169.254.169.254 is link-local",
        ),
        ("http://[fe80::1]/", "target address fe80::1 is link-local"),
        (
            "http://[fc00::1]/",
            "target address fc00::1 is unique-local",
        ),
        (
            "http://[fd00:ec2::254]/",
            "target address fd00:ec2::254 is unique-local",
        ),
        ("http://224.0.0.1/", "target address 224.0.0.1 is multicast"),
        ("http://[ff02::1]/", "target address ff02::1 is multicast"),
        ("http://0.0.0.0/", "target address 0.0.0.0 is unspecified"),
        ("http://[::]/", "target address :: is unspecified"),
        (
            "http://255.255.255.255/",
            "target address 255.255.255.255 is broadcast",
        ),
        (
            "http://100.64.0.1/",
            "target address 100.64.0.1 is shared address space",
        ),
        (
            "http://0.1.2.3/",
            "target address 0.1.2.3 is in \"this network\"",
        ),
        (
            "http://192.0.2.10/",
            "target address 192.0.2.10 is reserved for documentation",
        ),
        (
            "http://[64:ff9b::7f00:1]/",
            "target address 64:ff9b::7f00:1 is loopback",
        ),
        ("http://[2002:a9fe:a9fe::1]/", "is link-local"),
        // Odd IPv4 spellings are normalised by the URL parser first.
        ("http://2130706433/", "target address 127.0.0.1 is loopback"),
        ("http://0x7f.1/", "target address 127.0.0.1 is loopback"),
        (
            "http://0177.0.0.01/",
            "target address 127.0.0.1 is loopback",
        ),
        ("http://127.1/", "target address 127.0.0.1 is loopback"),
        ("http://0/", "target address 0.0.0.0 is unspecified"),
        (
            "http://0xa9fea9fe/",
            "target address 169.254.169.254 is link-local",
        ),
        (
            "https://3232235521/",
            "target address 192.168.0.1 is private",
        ),
        // A name whose DNS answer is refused.
        ("http://localhost/", "localhost resolves to"),
        ("http://LOCALHOST:9/", "is loopback"),
    ] {
        let r = app.scan(&app.alice, url).await;
        let detail = r.refused();
        assert!(detail.contains(why), "{url}: {detail}");
    }
    assert_eq!(app.total(&app.admin).await, 0, "nothing recorded");
}

#[actix_web::test]
async fn non_http_schemes_and_credentials_are_field_problems() {
    let app = spawn_app().await;
    for (url, code) in [
        ("ftp://example.com/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://127.0.0.1:70/_x", "scheme"),
        ("dict://127.0.0.1:11211/", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("data:text/html,hi", "scheme"),
        ("http://user:secret@example.com/", "credentials"),
        ("http://user@example.com/", "credentials"),
    ] {
        let r = app.scan(&app.alice, url).await;
        assert_eq!(r.field_codes(), [fc("url", code)], "{url}");
        assert!(!r.text.contains("secret"), "{}", r.text);
    }
    assert_eq!(app.total(&app.admin).await, 0);
}

#[actix_web::test]
async fn allowed_targets_open_only_the_listed_ranges() {
    let app = spawn_with(Config {
        allowed_targets: vec!["127.0.0.1/32"],
        timeout_ms: 2_000,
        ..Config::default()
    })
    .await;
    // Allowed: scanned (nothing listens there: recorded as connection refused).
    let port = crate::targets::closed_port();
    let b = app
        .scanned(&app.alice, &format!("http://127.0.0.1:{port}/"))
        .await
        .body;
    assert_eq!(b["error"], "connection refused");
    // Its neighbours are still refused.
    for url in ["http://127.0.0.2/", "http://10.0.0.1/", "http://[::1]/"] {
        app.scan(&app.alice, url).await.refused();
    }
}
