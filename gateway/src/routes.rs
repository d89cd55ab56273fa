//! The route table: every path the gateway serves for an upstream is declared
//! in config with the access it needs. Default deny: a route that does not say
//! `public` needs a valid token.

use std::collections::BTreeMap;

use actix_web::http::Method;
use serde::Deserialize;

/// One `routes[]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path prefix, matched on segment boundaries; longest wins.
    pub prefix: String,
    /// Upstream name (a key of `upstreams`); also the audience of the proof.
    pub upstream: String,
    /// Replaces the prefix in the upstream path (default: kept as is).
    #[serde(default)]
    pub rewrite: Option<String>,
    /// `public`, `authenticated`, a list of roles (any of them), or a map of
    /// method (or `*`) to one of those.
    pub access: AccessConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AccessConfig {
    Rule(RuleConfig),
    PerMethod(BTreeMap<String, RuleConfig>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RuleConfig {
    Keyword(Keyword),
    Roles(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keyword {
    Public,
    Authenticated,
}

/// What a request needs to pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Public,
    Authenticated,
    /// Any one of these roles.
    AnyRole(Vec<String>),
}

impl Rule {
    fn from_config(c: &RuleConfig) -> Result<Self, String> {
        match c {
            RuleConfig::Keyword(Keyword::Public) => Ok(Rule::Public),
            RuleConfig::Keyword(Keyword::Authenticated) => Ok(Rule::Authenticated),
            RuleConfig::Roles(r) if r.is_empty() => {
                Err("an empty role list would admit nobody".into())
            }
            RuleConfig::Roles(r) => match r.iter().find(|x| !common::identity::is_valid_role(x)) {
                Some(bad) => Err(format!("`{bad}` is not a valid role name")),
                None => Ok(Rule::AnyRole(r.clone())),
            },
        }
    }
}

/// A resolved route.
#[derive(Debug, Clone)]
pub struct Route {
    pub prefix: String,
    pub upstream: String,
    pub rewrite: Option<String>,
    default_rule: Option<Rule>,
    per_method: Vec<(Method, Rule)>,
}

impl Route {
    /// The rule for a method; `None` when the route does not serve it.
    pub fn rule_for(&self, method: &Method) -> Option<&Rule> {
        self.per_method
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, r)| r)
            .or(self.default_rule.as_ref())
    }

    /// The upstream path (with query) for a request path.
    pub fn upstream_path(&self, path: &str, query: &str) -> String {
        let rest = &path[self.prefix.len().min(path.len())..];
        let base = self.rewrite.as_deref().unwrap_or(&self.prefix);
        let mut p = if rest.is_empty() {
            base.to_owned()
        } else {
            format!(
                "{}/{}",
                base.trim_end_matches('/'),
                rest.trim_start_matches('/')
            )
        };
        if p.is_empty() {
            p.push('/');
        }
        if !query.is_empty() {
            p.push('?');
            p.push_str(query);
        }
        p
    }
}

/// Routes by prefix, longest first.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

fn segment_match(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (path.len() == prefix.len()
            || prefix.ends_with('/')
            || path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

impl RouteTable {
    /// Resolve and check the configured routes against the known upstreams.
    pub fn new(
        configs: &[RouteConfig],
        upstreams: &BTreeMap<String, Vec<String>>,
    ) -> Result<Self, String> {
        let mut routes = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let at = |m: String| format!("routes[{i}] ({}): {m}", c.prefix);
            if !c.prefix.starts_with('/') {
                return Err(at("prefix must start with `/`".into()));
            }
            if !upstreams.contains_key(&c.upstream) {
                return Err(at(format!("unknown upstream `{}`", c.upstream)));
            }
            if c.rewrite.as_deref().is_some_and(|r| !r.starts_with('/')) {
                return Err(at("rewrite must start with `/`".into()));
            }
            let (default_rule, per_method) = match &c.access {
                AccessConfig::Rule(r) => (Some(Rule::from_config(r).map_err(at)?), Vec::new()),
                AccessConfig::PerMethod(map) => {
                    let mut default = None;
                    let mut per = Vec::new();
                    for (m, r) in map {
                        let rule = Rule::from_config(r).map_err(at)?;
                        if m == "*" {
                            default = Some(rule);
                        } else {
                            let method = Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                                .map_err(|_| at(format!("`{m}` is not an HTTP method")))?;
                            per.push((method, rule));
                        }
                    }
                    (default, per)
                }
            };
            routes.push(Route {
                prefix: c.prefix.clone(),
                upstream: c.upstream.clone(),
                rewrite: c.rewrite.clone(),
                default_rule,
                per_method,
            });
        }
        routes.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then_with(|| a.prefix.cmp(&b.prefix))
        });
        for w in routes.windows(2) {
            if w[0].prefix == w[1].prefix {
                return Err(format!(
                    "routes: prefix `{}` is declared twice",
                    w[0].prefix
                ));
            }
        }
        Ok(Self { routes })
    }

    /// The longest route whose prefix matches `path` on a segment boundary.
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| segment_match(&r.prefix, path))
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(yaml: &str) -> Result<RouteTable, String> {
        use figment::providers::Format;
        let cfg: Vec<RouteConfig> = figment::Figment::from(figment::providers::Yaml::string(yaml))
            .extract_inner("routes")
            .map_err(|e| e.to_string())?;
        let ups = BTreeMap::from([
            ("users".to_owned(), vec!["http://u".to_owned()]),
            ("orders".into(), vec!["http://o".into()]),
        ]);
        RouteTable::new(&cfg, &ups)
    }

    #[test]
    fn longest_prefix_on_segment_boundaries_and_rules() {
        let t = table(
            "routes:\n  - {prefix: /api, upstream: users, access: public}\n  - {prefix: /api/users, upstream: users, rewrite: /users, access: [admin]}\n  - prefix: /api/orders\n    upstream: orders\n    access: {GET: [user, admin], DELETE: [admin], '*': authenticated}\n",
        )
        .unwrap_or_default();
        assert_eq!(
            t.find("/api/users/1").map(|r| r.prefix.as_str()),
            Some("/api/users")
        );
        assert_eq!(
            t.find("/api/users").map(|r| r.prefix.as_str()),
            Some("/api/users")
        );
        assert_eq!(
            t.find("/api/usersx").map(|r| r.prefix.as_str()),
            Some("/api")
        );
        assert!(t.find("/other").is_none());
        let users = t.find("/api/users/7").cloned();
        assert_eq!(
            users
                .as_ref()
                .map(|r| r.upstream_path("/api/users/7", "a=1")),
            Some("/users/7?a=1".into())
        );
        assert_eq!(
            users.as_ref().map(|r| r.upstream_path("/api/users", "")),
            Some("/users".into())
        );
        assert_eq!(
            users
                .as_ref()
                .and_then(|r| r.rule_for(&Method::GET).cloned()),
            Some(Rule::AnyRole(vec!["admin".into()]))
        );
        let orders = t.find("/api/orders").cloned();
        assert_eq!(
            orders
                .as_ref()
                .and_then(|r| r.rule_for(&Method::DELETE).cloned()),
            Some(Rule::AnyRole(vec!["admin".into()]))
        );
        assert_eq!(
            orders
                .as_ref()
                .and_then(|r| r.rule_for(&Method::POST).cloned()),
            Some(Rule::Authenticated)
        );
        assert_eq!(
            orders
                .as_ref()
                .map(|r| r.upstream_path("/api/orders/1", "")),
            Some("/api/orders/1".into())
        );
    }

    #[test]
    fn config_errors_name_the_route() {
        for (yaml, needle) in [
            (
                "routes:\n  - {prefix: /a, upstream: nope, access: public}\n",
                "unknown upstream",
            ),
            (
                "routes:\n  - {prefix: a, upstream: users, access: public}\n",
                "must start",
            ),
            (
                "routes:\n  - {prefix: /a, upstream: users, access: []}\n",
                "empty role list",
            ),
            (
                "routes:\n  - {prefix: /a, upstream: users, access: {'GE T': public}}\n",
                "not an HTTP method",
            ),
            (
                "routes:\n  - {prefix: /a, upstream: users, access: public}\n  - {prefix: /a, upstream: users, access: public}\n",
                "twice",
            ),
            (
                "routes:\n  - {prefix: /a, upstream: users, access: public}\n  - {prefix: /b, upstream: users, access: public}\n  - {prefix: /a, upstream: users, access: public}\n",
                "twice",
            ),
        ] {
            let e = table(yaml).err().unwrap_or_default();
            assert!(e.contains(needle), "{yaml}: {e}");
        }
    }
}
