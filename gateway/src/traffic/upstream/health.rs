//! Active health checks: `GET <target><path>` on every target of every
//! upstream whose check is due, through the same client as traffic (so a
//! probe sees what a request would: the same connector and timeouts).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::http::header::HeaderMap;

use super::client::{self, Accounting, Body, Call, Peer, RetryPolicy};
use super::pool::{Target, Upstream};
use crate::clock::mono_ms;

/// Probe the upstreams `current` returns whose check is due, for as long as
/// it returns any (`None`: the gateway is gone). Each upstream's round runs
/// on its own task, so a slow target never delays another upstream's checks.
pub fn spawn(current: impl Fn() -> Option<Vec<Arc<Upstream>>> + 'static) {
    actix_web::rt::spawn(async move {
        loop {
            let Some(upstreams) = current() else { return };
            let now = mono_ms();
            for up in upstreams {
                let hc = &up.spec.health_check;
                if !hc.enabled || up.next_probe.load(Ordering::Relaxed) > now {
                    continue;
                }
                up.next_probe
                    .store(now + hc.interval_secs * 1000, Ordering::Relaxed);
                actix_web::rt::spawn(async move { probe_round(&up).await });
            }
            actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

async fn probe_round(up: &Upstream) {
    let hc = &up.spec.health_check;
    let probes = up.targets().into_iter().map(|t| async move {
        let ok = probe(up, t.clone()).await;
        t.record_probe(ok, hc);
    });
    futures_util::future::join_all(probes).await;
}

/// One active check of `t`, as `up`'s health check says: whether it
/// answered 2xx or 3xx in time. A registration runs it once before it is
/// stored, so a target takes traffic only after a check has passed.
pub async fn probe(up: &Upstream, t: Arc<Target>) -> bool {
    let hc = &up.spec.health_check;
    let call = Call {
        upstream: up,
        peer: Peer::Fixed(t),
        method: Method::GET,
        path: &hc.path,
        timeout: Duration::from_millis(hc.timeout_ms),
        retry: RetryPolicy::never(),
        accounting: Accounting::Untracked,
        body: Body::Empty,
    };
    match client::send(call, &|| Ok(HeaderMap::new())).await {
        Ok(mut answer) => {
            // Drain a little so the connection can be reused.
            let _ = answer.response.body().limit(64 * 1024).await;
            let status = answer.response.status();
            status.is_success() || status.is_redirection()
        }
        Err(_) => false,
    }
}
