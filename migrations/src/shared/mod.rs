//! Migrations more than one service applies to its own database (each
//! service still owns its copy of the table).

pub mod m20261202_000001_create_audit_events;
