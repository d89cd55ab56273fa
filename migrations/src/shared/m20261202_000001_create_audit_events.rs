//! The audit trail: one append-only table in the database of each service
//! that sees security events (the gateway and users). Nothing updates or
//! deletes a row.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    At,
    Event,
    Actor,
    Subject,
    Client,
    RequestId,
    Result,
    Detail,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .if_not_exists()
                    .col(uuid(AuditEvents::Id).primary_key())
                    .col(timestamp_with_time_zone(AuditEvents::At))
                    .col(string_len(AuditEvents::Event, 64))
                    .col(uuid_null(AuditEvents::Actor))
                    .col(string_len_null(AuditEvents::Subject, 256))
                    .col(string_len_null(AuditEvents::Client, 64))
                    .col(string_len_null(AuditEvents::RequestId, 128))
                    .col(string_len(AuditEvents::Result, 16))
                    .col(text_null(AuditEvents::Detail))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_audit_events_at", AuditEvents::At),
            ("idx_audit_events_event", AuditEvents::Event),
            ("idx_audit_events_actor", AuditEvents::Actor),
            ("idx_audit_events_subject", AuditEvents::Subject),
        ] {
            manager
                .create_index(
                    Index::create()
                        .if_not_exists()
                        .name(name)
                        .table(AuditEvents::Table)
                        .col(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}
