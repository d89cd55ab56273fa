//! End to end through the gateway, with the real users service on port 0 and
//! an echo upstream that shows exactly what a service receives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod clients;
mod discovery;
mod federation;
mod flow;
mod helpers;
mod issuer;
mod logins;
mod mfa;
mod observability;
mod oidc;
mod provider_login;
mod ratelimits;
mod registry;
mod sessions;
mod tls;
mod tokens;
mod traces;
mod traffic;
mod web_sessions;
mod websocket;
