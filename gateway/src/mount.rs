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

/// Every room's endpoints, and the login pages' configured scope
/// (`login.path`): what the edge asks "is this ours?".
#[derive(Debug, Clone)]
pub struct Own {
    rooms: &'static [&'static [Endpoint]],
    login: std::sync::Arc<str>,
}

impl Own {
    pub fn new(rooms: &'static [&'static [Endpoint]], login: &str) -> Self {
        Self {
            rooms,
            login: login.into(),
        }
    }

    /// One of the gateway's own endpoints, or under one of its scopes.
    pub fn contains(&self, path: &str) -> bool {
        under(path, &self.login)
            || self
                .rooms
                .iter()
                .flat_map(|room| room.iter())
                .any(|e| e.matches(path))
    }

    /// Whether a scope at `prefix` would take a path one of the rooms
    /// serves, or is itself under one of them (so it cannot be mounted).
    pub fn collides(&self, prefix: &str) -> bool {
        self.rooms.iter().flat_map(|room| room.iter()).any(|e| {
            let p = match e {
                Endpoint::Exact(p, _) | Endpoint::Scope(p, _) => *p,
            };
            under(p, prefix) || e.matches(prefix)
        })
    }
}

/// `path` is `prefix` or below it (as actix-web matches a scope).
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}
