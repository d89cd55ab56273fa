//! Accounts linked to an external identity provider: one row per local
//! account that an `(issuer, subject)` pair signs in as.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum ExternalIdentities {
    Table,
    UserId,
    Issuer,
    Subject,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ExternalIdentities::Table)
                    .col(uuid(ExternalIdentities::UserId).primary_key())
                    .col(string_len(ExternalIdentities::Issuer, 512))
                    .col(string_len(ExternalIdentities::Subject, 255))
                    .col(timestamp_with_time_zone(ExternalIdentities::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_external_identities_user")
                            .from(ExternalIdentities::Table, ExternalIdentities::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_external_identities_issuer_subject")
                    .table(ExternalIdentities::Table)
                    .col(ExternalIdentities::Issuer)
                    .col(ExternalIdentities::Subject)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ExternalIdentities::Table).to_owned())
            .await
    }
}
