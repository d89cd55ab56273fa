//! The scanner service's schema. Its tables arrive with the issue that builds the
//! service; until then the migrator is empty but already owns its bookkeeping
//! table, so adding the first migration needs no other change.

use sea_orm_migration::prelude::*;

crate::migrator!("seaql_migrations_scanner", []);
