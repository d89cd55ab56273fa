//! Black-box tests of the users service: the real app on port 0 with a fresh
//! database per test (SQLite, or PostgreSQL with TEST_DATABASE_URL).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_crud;
mod credentials;
mod helpers;
mod last_admin;
mod links;
mod me;
mod platform;
mod proof;
