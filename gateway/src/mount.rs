//! The gateway's own endpoints, as each room declares them: one list per
//! room, which the room mounts and the edge asks "is this ours?" (every
//! other path is proxied), so the two cannot differ.

use actix_web::{Resource, Scope, web};

/// One of the gateway's own endpoints, as a room declares it: the path
/// the router matches and what it serves there. A room's list is both what
/// it mounts ([`mount`]) and what [`Own`] asks, so the two cannot differ.
pub enum Endpoint {
    /// A resource at exactly this path.
    Exact(&'static str, fn(Resource) -> Resource),
    /// A scope: this prefix, then the end or a `/` (as actix-web matches a
    /// scope). What its resources do not serve is proxied.
    Scope(&'static str, fn(Scope) -> Scope),
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Exact(p, _) => write!(f, "{p}"),
            Endpoint::Scope(p, _) => write!(f, "{p}/*"),
        }
    }
}

impl Endpoint {
    fn matches(&self, path: &str) -> bool {
        match self {
            Endpoint::Exact(p, _) => *p == path,
            Endpoint::Scope(p, _) => path
                .strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }
}

/// Register a room's endpoints. A scope has no default service of its own:
/// what it does not serve falls to its parent's, the proxy.
pub fn mount(cfg: &mut web::ServiceConfig, endpoints: &[Endpoint]) {
    for endpoint in endpoints {
        match endpoint {
            Endpoint::Exact(path, serve) => {
                cfg.service(serve(web::resource(*path)));
            }
            Endpoint::Scope(path, serve) => {
                cfg.service(serve(web::scope(path)));
            }
        }
    }
}

/// Every room's endpoints: what the edge asks "is this ours?".
#[derive(Debug, Clone, Copy)]
pub struct Own(pub &'static [&'static [Endpoint]]);

impl Own {
    /// One of the gateway's own endpoints, or under one of its scopes.
    pub fn contains(&self, path: &str) -> bool {
        self.0
            .iter()
            .flat_map(|room| room.iter())
            .any(|e| e.matches(path))
    }
}
