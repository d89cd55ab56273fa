//! The gateway's shared state, built once from settings.

use std::collections::BTreeMap;

use common::identity::ProofMinter;

use crate::limiter::FailureLimiter;
use crate::routes::RouteTable;
use crate::sessions::Sessions;
use crate::tokens::TokenKeys;

pub struct Gateway {
    pub tokens: TokenKeys,
    pub sessions: Sessions,
    pub minter: ProofMinter,
    pub routes: RouteTable,
    pub upstreams: BTreeMap<String, Vec<String>>,
    /// Extra client headers removed before forwarding (besides the identity ones).
    pub strip_headers: Vec<String>,
    /// The upstream that checks credentials and re-reads users.
    pub users_upstream: String,
    pub access_ttl_secs: i64,
    pub user_limiter: FailureLimiter,
    pub ip_limiter: FailureLimiter,
    pub no_route: crate::NoRoute,
}
