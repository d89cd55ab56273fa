//! Black-box tests of the whole system (the gateway with the shipped route
//! table in front of every service), each test with fresh databases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;
mod conformance;
mod deploy;
mod documents;
mod federation;
mod input;
mod mfa;
mod openapi;
mod services;
mod signin;
mod support;
mod traces;
mod web_apps;
