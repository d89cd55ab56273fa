//! sea-orm entities of the scanner schema (see `migrations::scanner`).

pub mod scan;
