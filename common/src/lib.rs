//! What every deployable of the workspace shares: configuration loading,
//! RFC 9457 problem responses, telemetry and the request-id middleware,
//! database connection, key files, and both sides of the gateway identity
//! proof (minting in the gateway, verification in the services).

pub mod audit;
pub mod config;
pub mod db;
pub mod http;
pub mod identity;
pub mod keys;
pub mod listing;
pub mod problem;
pub mod telemetry;
pub mod text;
pub mod tls;
pub mod traces;

pub use problem::{FieldError, Problem};
