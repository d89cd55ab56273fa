//! The gateway: the only public entry point. It issues, rotates and revokes
//! tokens (`/api/login`, `/api/refresh`, `/api/logout`, JWKS), checks every
//! routed request against the route's access rule, strips client-sent
//! identity headers and forwards the verified identity with a signed proof.
//!
//! Three rooms, each a folder with its own state and endpoints:
//! [`identity`] (who is calling), [`traffic`] (where requests go) and
//! [`ops`] (running it). Beside them: [`settings`] (what the configuration
//! says), [`live`] (what a reload swaps), [`mount`] (the rooms' endpoints), [`clock`], [`redis_link`], and
//! [`startup`], which builds the rooms and wires them.

pub mod clock;
pub mod identity;
pub mod live;
pub mod mount;
pub mod ops;
pub mod redis_link;
pub mod settings;
pub mod startup;
pub mod traffic;

#[cfg(test)]
mod tests_support;

pub use settings::{ENV_ALIASES, Settings};
pub use startup::{build, build_with_listener, build_with_source, proof_minter};
