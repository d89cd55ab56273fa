//! Upstreams and how the gateway reaches them.
//!
//! - [`pool`]: the configured upstreams, their targets and what is known
//!   about each (health, ejection, in-flight leases), and balancing;
//! - [`client`]: the one way to call a target: target choice, attempts,
//!   timeouts, the retry policy and the error that says where a call failed;
//! - [`health`]: the active checks, through the same client;
//! - [`tls`]: how `https://` targets are verified (and mTLS to them).

pub mod client;
pub mod discovery;
pub mod health;
pub mod pool;
pub mod registry;
pub mod spec;
pub mod tls;
