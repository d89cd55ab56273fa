//! The gateway: the only public entry point. It issues, rotates and revokes
//! tokens (`/api/login`, `/api/refresh`, `/api/logout`, JWKS), checks every
//! routed request against the route's access rule, strips client-sent
//! identity headers and forwards the verified identity with a signed proof.
//!
//! The layers, from the bottom (ARCHITECTURE.md has the whole map):
//! - engines that know nothing of the gateway's state: [`clock`],
//!   [`tokens`], [`issuers`], [`sessions`], [`revocations`], [`routes`], [`upstream`],
//!   [`ratelimit`], [`redis_link`], [`login_limits`], [`cache`], [`metrics`],
//!   [`compose::table`], [`openapi::merge`], [`openapi::fetch`];
//! - [`settings`] (what the configuration says) and [`state`] (what it
//!   resolves to, shared behind `web::Data`);
//! - the handlers: [`proxy`] (the phases), [`admission`], [`compose::answer`],
//!   [`auth`], [`users_api`], [`admin`], [`ops`], [`openapi::handlers`];
//! - [`startup`], which wires them.

pub mod admin;
pub mod admission;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod client_admin;
pub mod clients;
pub mod clock;
pub mod compose;
pub mod edge;
pub mod issuers;
pub mod login_limits;
pub mod metrics;
pub mod mfa;
pub mod oauth;
pub mod openapi;
pub mod ops;
pub mod proxy;
pub mod ratelimit;
pub mod redis_link;
pub mod revocations;
pub mod routes;
pub mod sessions;
pub mod settings;
pub mod startup;
pub mod state;
pub mod tls;
pub mod tokens;
pub mod upstream;
pub mod users_api;
pub mod websocket;

#[cfg(test)]
mod tests_support;

pub use settings::{ENV_ALIASES, Settings};
pub use startup::{build, build_with_listener, build_with_source, proof_minter};
