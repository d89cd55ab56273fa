//! Black-box tests of the scanner service: the real app on port 0 with a
//! fresh database per test (SQLite, or PostgreSQL with TEST_DATABASE_URL),
//! called with proofs minted by the gateway's key for two users and an admin,
//! scanning real HTTP servers that the tests start on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod create;
mod helpers;
mod list;
mod platform;
mod replicas;
mod scans;
mod ssrf;
mod targets;
