//! The prober: one SSRF-safe HTTP GET of a target, following redirects by hand.
//!
//! For every hop (the URL asked for, then each redirect) the prober
//!
//! 1. checks the URL (http/https, a host, no credentials);
//! 2. resolves the host **once** (`tokio::net::lookup_host`, which runs
//!    `getaddrinfo` on the blocking pool) unless it is an IP literal, and judges
//!    **every** address with the [`Policy`]: one refused address refuses the
//!    hop, so a name cannot mix a public and a private answer;
//! 3. connects to exactly the address it judged: a fresh client whose resolver
//!    is pinned to it (`ClientBuilder::resolve`), with redirects off, no proxy
//!    and no decompression; there is no second lookup an attacker's DNS could
//!    answer differently (DNS rebinding).
//!
//! Everything runs under one deadline (`scan.timeout_ms`): DNS, connects,
//! each response head and the body. At most `scan.max_redirects` redirects
//! are followed and at most `scan.max_body_bytes` of the final body are read,
//! chunk by chunk without keeping them, then the connection is dropped; so
//! an endless or trickling body ends the scan on time in bounded memory.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION};
use tokio::time::{Instant, timeout_at};
use url::{Host, Url};

use crate::domain::TargetUrl;
use crate::policy::Policy;
use crate::settings::ScanSettings;

const USER_AGENT: &str = concat!("gatehouse-scanner/", env!("CARGO_PKG_VERSION"));

/// One redirect of the chain: the URL that answered with it, and the status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Hop {
    pub url: String,
    pub status: u16,
}

/// What the prober saw of the final response.
#[derive(Debug)]
pub struct Fetched {
    pub final_url: Url,
    pub status: u16,
    pub headers: HeaderMap,
    /// From the start of the scan to the final response's head.
    pub elapsed: Duration,
    pub body_bytes: u64,
    /// The body was longer than `max_body_bytes`, or did not end in time.
    pub body_truncated: bool,
}

/// How a probe ends without a final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The SSRF policy or the URL rules refuse a hop: nothing is recorded.
    Refused(String),
    /// The target could not be reached (DNS, connection, TLS, timeout, too
    /// many redirects): recorded as a scan with this error.
    Unreachable(String),
}

/// The outcome of a probe: the chain so far, and the final response or why
/// there is none. `last_url` is the URL of the last hop tried.
#[derive(Debug)]
pub struct Probe {
    pub redirects: Vec<Hop>,
    pub last_url: Url,
    pub elapsed: Duration,
    pub result: Result<Fetched, Failure>,
}

/// Runs probes under one service's policy and bounds.
#[derive(Debug, Clone)]
pub struct Prober {
    policy: Policy,
    timeout: Duration,
    max_redirects: usize,
    max_body_bytes: u64,
}

impl Prober {
    pub fn new(settings: &ScanSettings) -> Self {
        Self {
            policy: Policy::new(settings.allowed_targets.clone()),
            timeout: Duration::from_millis(settings.timeout_ms.max(1)),
            max_redirects: settings.max_redirects,
            max_body_bytes: settings.max_body_bytes,
        }
    }

    /// GET `target`, following redirects by hand, within the deadline.
    #[tracing::instrument(skip_all, fields(url = %target.as_url()))]
    pub async fn probe(&self, target: &TargetUrl) -> Probe {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut redirects = Vec::new();
        let mut url = target.as_url().clone();
        let result = self
            .follow(&mut url, &mut redirects, started, deadline)
            .await;
        Probe {
            redirects,
            last_url: url,
            elapsed: started.elapsed(),
            result,
        }
    }

    async fn follow(
        &self,
        url: &mut Url,
        redirects: &mut Vec<Hop>,
        started: Instant,
        deadline: Instant,
    ) -> Result<Fetched, Failure> {
        let timed_out =
            || Failure::Unreachable(format!("timed out after {} ms", self.timeout.as_millis()));
        loop {
            let hop = redirects.len();
            let addr = timeout_at(deadline, self.pin(url))
                .await
                .map_err(|_| timed_out())?
                .map_err(|f| in_hop(f, hop, url))?;
            let client = client(url, addr, deadline)?;
            let response = timeout_at(deadline, client.get(url.clone()).send())
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| Failure::Unreachable(describe(&e, self.timeout)))?;
            let status = response.status();
            let location = response.headers().get(LOCATION).cloned();
            if let (true, Some(location)) = (status.is_redirection(), location) {
                if redirects.len() >= self.max_redirects {
                    return Err(Failure::Unreachable(format!(
                        "too many redirects (more than {})",
                        self.max_redirects
                    )));
                }
                let next = location
                    .to_str()
                    .ok()
                    .and_then(|l| url.join(l).ok())
                    .ok_or_else(|| {
                        Failure::Unreachable(format!(
                            "redirect from {url} has an invalid Location header"
                        ))
                    })?;
                redirects.push(Hop {
                    url: url.to_string(),
                    status: status.as_u16(),
                });
                *url = next;
                url.set_fragment(None);
                continue;
            }
            let elapsed = started.elapsed();
            let headers = response.headers().clone();
            let (body_bytes, body_truncated) = self.drain(response, deadline).await;
            return Ok(Fetched {
                final_url: url.clone(),
                status: status.as_u16(),
                headers,
                elapsed,
                body_bytes,
                body_truncated,
            });
        }
    }

    /// The one address this hop may connect to, judged by the policy.
    async fn pin(&self, url: &Url) -> Result<SocketAddr, Failure> {
        TargetUrl::check("url", url).map_err(|e| Failure::Refused(e.message))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| Failure::Refused("the URL has no port".into()))?;
        let ip = |ip: IpAddr| {
            self.policy
                .check(ip)
                .map(|()| SocketAddr::new(ip, port))
                .map_err(|r| Failure::Refused(r.to_string()))
        };
        match url.host() {
            Some(Host::Ipv4(v4)) => ip(v4.into()),
            Some(Host::Ipv6(v6)) => ip(v6.into()),
            Some(Host::Domain(name)) => {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
                    .await
                    .map_err(|_| Failure::Unreachable(format!("DNS lookup of {name} failed")))?
                    .collect();
                let first = *addrs.first().ok_or_else(|| {
                    Failure::Unreachable(format!("DNS lookup of {name} returned no address"))
                })?;
                for a in &addrs {
                    self.policy.check(a.ip()).map_err(|r| {
                        Failure::Refused(format!("{name} resolves to {}: {r}", a.ip()))
                    })?;
                }
                Ok(first)
            }
            None => Err(Failure::Refused("the URL has no host".into())),
        }
    }

    /// Read at most `max_body_bytes` of the body before the deadline, keeping
    /// nothing; dropping the response then closes the connection.
    async fn drain(&self, mut response: reqwest::Response, deadline: Instant) -> (u64, bool) {
        let mut read = 0u64;
        loop {
            match timeout_at(deadline, response.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    read = read.saturating_add(chunk.len() as u64);
                    if read > self.max_body_bytes {
                        return (self.max_body_bytes, true);
                    }
                }
                Ok(Ok(None)) => return (read, false),
                // A broken body, or no more time: the head is what counts.
                Ok(Err(_)) | Err(_) => return (read, true),
            }
        }
    }
}

/// Name the redirect a refusal happened at (hop 0 is the URL asked for).
fn in_hop(f: Failure, hop: usize, url: &Url) -> Failure {
    match f {
        Failure::Refused(why) if hop > 0 => {
            // Credentials in a Location are not repeated back.
            let mut shown = url.clone();
            let _ = shown.set_username("");
            let _ = shown.set_password(None);
            Failure::Refused(format!("redirect {hop} to {shown} refused: {why}"))
        }
        other => other,
    }
}

/// A client for one hop: resolver pinned to `addr`, no redirects, no proxy.
fn client(url: &Url, addr: SocketAddr, deadline: Instant) -> Result<reqwest::Client, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(USER_AGENT)
        .connect_timeout(left)
        .timeout(left)
        .pool_max_idle_per_host(0);
    if let Some(Host::Domain(name)) = url.host() {
        b = b.resolve(name, addr);
    }
    b.build().map_err(|e| {
        tracing::error!(error = %e, "building the scan client");
        Failure::Unreachable("the scanner could not prepare its HTTP client".into())
    })
}

/// A short, stable reason for a failed request.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {} ms", timeout.as_millis());
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut innermost = e.to_string();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => return "connection reset".into(),
                std::io::ErrorKind::TimedOut => {
                    return format!("timed out after {} ms", timeout.as_millis());
                }
                _ => {}
            }
        }
        innermost = s.to_string();
        source = s.source();
    }
    if innermost.to_ascii_lowercase().contains("certificate") {
        format!("TLS certificate rejected: {innermost}")
    } else if e.is_connect() {
        format!("connection failed: {innermost}")
    } else {
        format!("request failed: {innermost}")
    }
}
