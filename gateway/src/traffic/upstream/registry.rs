//! The service registry: targets registered through the admin API (and
//! configured targets it took out), in the gateway's database, so every
//! replica applies the same changes and a restart keeps them.
//!
//! The database is the source of truth; each replica keeps the last state
//! it read (`Traffic::registry`) and applies it to its upstreams. A change
//! reaches the other replicas at once through Redis (the revocation
//! channel's `registry` message, acknowledged like a revocation), and in
//! any case within `registry.resync_secs`, when each replica reads the
//! table again; a registration is also checked before it is stored: an
//! http(s) URL of at most 512 bytes with a host as written (no host that
//! IDNA mapping or percent-decoding would turn into another), an explicit
//! port other than 0, no user info, and a host it may name: one the
//! upstream's configured targets already name, or one
//! `registry.allowed_targets` lists (`*`: any). So an admin token alone
//! cannot point an upstream at any host; and the upstream that checks
//! credentials (it receives passwords) takes no registration at all unless
//! `registry.allow_credential_upstream` says so.

use std::collections::BTreeMap;

use chrono::Utc;
use ipnet::IpNet;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use serde::Deserialize;

use super::pool::{Registered, Registrations};

/// `registry:` in the gateway's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// How often each replica re-reads the registrations.
    #[serde(default = "default_resync")]
    pub resync_secs: u64,
    /// Hosts a registration may name besides those the upstream's own
    /// configured targets name (empty: only those): CIDRs (`10.0.0.0/8`)
    /// for addresses, host names (`orders.internal`), `*.` suffixes
    /// (`*.svc.cluster.local`) for names, and `*` for any host.
    #[serde(default)]
    pub allowed_targets: Vec<String>,
    /// Let registrations add targets to the upstream that checks
    /// credentials (`identity.users_upstream`): off, since such a target
    /// receives users' passwords.
    #[serde(default)]
    pub allow_credential_upstream: bool,
}

fn default_resync() -> u64 {
    10
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            resync_secs: default_resync(),
            allowed_targets: Vec::new(),
            allow_credential_upstream: false,
        }
    }
}

/// `registry.allowed_targets`, parsed, and the upstream no registration
/// may touch.
#[derive(Debug, Clone, Default)]
pub struct Allowed {
    nets: Vec<IpNet>,
    hosts: Vec<String>,
    suffixes: Vec<String>,
    /// `*`: any host.
    any: bool,
    /// The upstream that checks credentials, unless registrations may add
    /// to it.
    protected: Option<String>,
}

impl Allowed {
    /// The hosts `entries` allow; `protected`: the upstream that takes no
    /// registration.
    pub fn parse(entries: &[String], protected: Option<&str>) -> Result<Self, String> {
        let mut a = Allowed {
            protected: protected.map(str::to_owned),
            ..Allowed::default()
        };
        for e in entries {
            let e = e.trim().to_ascii_lowercase();
            if e == "*" {
                a.any = true;
            } else if let Ok(net) = e.parse::<IpNet>() {
                a.nets.push(net);
            } else if let Ok(ip) = e.parse::<std::net::IpAddr>() {
                a.nets.push(IpNet::from(ip));
            } else if let Some(suffix) = e.strip_prefix("*.") {
                if !is_host_name(suffix) {
                    return Err(format!(
                        "registry.allowed_targets: `{e}` is not a host pattern"
                    ));
                }
                a.suffixes.push(format!(".{suffix}"));
            } else if is_host_name(&e) {
                a.hosts.push(e);
            } else {
                return Err(format!(
                    "registry.allowed_targets: `{e}` is neither a CIDR nor a host name"
                ));
            }
        }
        Ok(a)
    }

    /// Whether `upstream` takes registrations at all.
    pub fn takes(&self, upstream: &str) -> bool {
        self.protected.as_deref() != Some(upstream)
    }

    /// Whether a registration may name `host`: one of `configured` (the
    /// hosts the upstream's configured targets name), or one the list
    /// allows (an address is matched by the CIDRs, a name by the names and
    /// suffixes: no lookup is made, so what a name resolves to later cannot
    /// change the answer).
    pub fn admits(&self, host: &str, configured: &[String]) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if self.any || configured.iter().any(|c| c.eq_ignore_ascii_case(host)) {
            return true;
        }
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return self.nets.iter().any(|n| n.contains(&ip));
        }
        let host = host.to_ascii_lowercase();
        self.hosts.contains(&host) || self.suffixes.iter().any(|s| host.ends_with(s.as_str()))
    }
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The longest URL a registration may store (its column's width).
pub const MAX_URL: usize = 512;

/// A registration's URL, checked: at most [`MAX_URL`] bytes, `http` or
/// `https`, no user info, a host as written and an explicit port other
/// than 0, nothing after the path; a host `allowed` admits besides those of
/// `configured`. The URL as stored (no trailing slash): what was checked.
pub fn check_url(raw: &str, allowed: &Allowed, configured: &[String]) -> Result<String, String> {
    if raw.len() > MAX_URL {
        return Err(format!("a target URL has at most {MAX_URL} bytes"));
    }
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("`{raw}`: the scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{raw}`: a target URL carries no user info"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{raw}`: a target URL has no query or fragment"));
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(format!("`{raw}`: the host is missing"));
    };
    // `Url` drops a port that is the scheme's default: look for it in the
    // text itself, after the host.
    let after_scheme = raw.trim().split_once("://").map_or("", |(_, r)| r);
    let authority = after_scheme.split('/').next().unwrap_or_default();
    let port = authority
        .rsplit_once(':')
        .filter(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .filter(|(h, _)| !h.ends_with(']') || authority.starts_with('['));
    let Some((written, port)) = port.filter(|_| !authority.ends_with(']')) else {
        return Err(format!(
            "`{raw}`: the port is missing (say `:80`, `:443`, ...)"
        ));
    };
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("`{raw}`: the port must be 1 to 65535"));
    }
    // The host the URL parser understood must be the one written: IDNA
    // mapping (`。` for `.`) or percent-decoding would check one host and
    // store (and connect to) another.
    if !written.eq_ignore_ascii_case(host) {
        return Err(format!(
            "`{raw}`: write the host as `{host}` (ASCII, no encoded characters)"
        ));
    }
    if !allowed.admits(host, configured) {
        return Err(format!(
            "`{raw}`: the host `{host}` is not one of this upstream's own hosts nor among registry.allowed_targets"
        ));
    }
    super::spec::target_url(raw.trim())
}

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "upstream_registrations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub upstream: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub url: String,
        pub name: String,
        /// `add` or `remove`.
        pub kind: String,
        pub actor: Option<String>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use entity as row;

const ADD: &str = "add";
const REMOVE: &str = "remove";

/// The registrations in the gateway's database.
pub struct Registry {
    db: DatabaseConnection,
}

impl Registry {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Every upstream's registrations, as stored.
    pub async fn load(&self) -> Result<BTreeMap<String, Registrations>, DbErr> {
        let mut out: BTreeMap<String, Registrations> = BTreeMap::new();
        for r in row::Entity::find().all(&self.db).await? {
            let reg = out.entry(r.upstream).or_default();
            if r.kind == REMOVE {
                reg.removed.insert(r.url);
            } else {
                reg.added.insert(
                    r.url,
                    Registered {
                        name: r.name,
                        by: r.actor,
                        at: r.created_at,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Register `url` as the target `name` of `upstream`; a configured
    /// target the registry had removed (`configured`) comes back instead.
    pub async fn add(
        &self,
        upstream: &str,
        url: &str,
        name: &str,
        configured: bool,
        actor: Option<String>,
    ) -> Result<(), DbErr> {
        let existing = row::Entity::find_by_id((upstream.to_owned(), url.to_owned()))
            .one(&self.db)
            .await?;
        if let Some(r) = existing {
            row::Entity::delete_by_id((r.upstream, r.url))
                .exec(&self.db)
                .await?;
            if configured {
                return Ok(());
            }
        }
        row::Entity::insert(row::ActiveModel {
            upstream: Set(upstream.to_owned()),
            url: Set(url.to_owned()),
            name: Set(name.to_owned()),
            kind: Set(ADD.to_owned()),
            actor: Set(actor),
            created_at: Set(Utc::now()),
        })
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// Take `url` out of `upstream`: a registered target's registration
    /// goes; a configured target is remembered as removed.
    pub async fn remove(
        &self,
        upstream: &str,
        url: &str,
        name: &str,
        configured: bool,
        actor: Option<String>,
    ) -> Result<(), DbErr> {
        row::Entity::delete_many()
            .filter(row::Column::Upstream.eq(upstream))
            .filter(row::Column::Url.eq(url))
            .exec(&self.db)
            .await?;
        if configured {
            row::Entity::insert(row::ActiveModel {
                upstream: Set(upstream.to_owned()),
                url: Set(url.to_owned()),
                name: Set(name.to_owned()),
                kind: Set(REMOVE.to_owned()),
                actor: Set(actor),
                created_at: Set(Utc::now()),
            })
            .exec_without_returning(&self.db)
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn registrations_name_an_http_target_with_a_port_and_an_allowed_host() {
        let any = Allowed::parse(&["*".into()], None).unwrap();
        assert_eq!(
            check_url("http://10.0.0.7:8080/", &any, &[]).unwrap(),
            "http://10.0.0.7:8080"
        );
        assert!(check_url("https://orders.internal:443", &any, &[]).is_ok());
        assert!(check_url("http://[::1]:8080", &any, &[]).is_ok());
        for bad in [
            "ftp://x:21",
            "http://user:pw@x:80",
            "http://x",
            "https://orders.internal",
            "http://[::1]",
            "http://:80",
            "http://x:80/?q=1",
            "not a url",
            // Port 0, and hosts the parser would read as another one.
            "http://x:0",
            "http://x:65536",
            "http://169.254.169.254\u{3002}svc.cluster.local:80",
            "http://169.254.169.254%2esvc.cluster.local:80",
            "http://0x7f.1:80",
        ] {
            assert!(check_url(bad, &any, &[]).is_err(), "{bad}");
        }
        let long = format!("http://x:80/{}", "a".repeat(MAX_URL));
        assert!(check_url(&long, &any, &[]).unwrap_err().contains("512"));
        let allowed = Allowed::parse(
            &[
                "10.0.0.0/8".into(),
                "orders.internal".into(),
                "*.svc.cluster.local".into(),
            ],
            None,
        )
        .unwrap();
        assert!(check_url("http://10.1.2.3:80", &allowed, &[]).is_ok());
        assert!(check_url("http://orders.internal:80", &allowed, &[]).is_ok());
        assert!(
            check_url(
                "http://users.gatehouse.svc.cluster.local:8080",
                &allowed,
                &[]
            )
            .is_ok()
        );
        assert!(check_url("http://192.0.2.1:80", &allowed, &[]).is_err());
        assert!(check_url("http://evil.example:80", &allowed, &[]).is_err());
        assert!(check_url("http://svc.cluster.local.evil:80", &allowed, &[]).is_err());
        assert!(Allowed::parse(&["not a host!".into()], None).is_err());
    }

    #[test]
    fn by_default_only_the_upstreams_own_hosts_and_never_the_credential_checker() {
        let none = Allowed::parse(&[], Some("users")).unwrap();
        let own = ["scanner1.internal".to_owned(), "10.0.0.5".to_owned()];
        assert!(check_url("http://scanner1.internal:9000", &none, &own).is_ok());
        assert!(check_url("http://10.0.0.5:81", &none, &own).is_ok());
        for elsewhere in [
            "http://169.254.169.254:80",
            "http://127.0.0.1:6379",
            "http://attacker.example:80",
        ] {
            assert!(check_url(elsewhere, &none, &own).is_err(), "{elsewhere}");
        }
        assert!(!none.takes("users") && none.takes("scanner"));
        assert!(Allowed::parse(&[], None).unwrap().takes("users"));
    }
}
