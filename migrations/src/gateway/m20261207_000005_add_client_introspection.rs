//! Which audiences' tokens a machine client may introspect (RFC 7662): a
//! permission an admin gives a resource server, none by default, so a
//! registered client cannot learn who holds any token.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OauthClients {
    Table,
    /// Space-separated audiences; empty: no introspection.
    Introspect,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OauthClients::Table)
                    .add_column(string_len(OauthClients::Introspect, 1024).default(""))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(OauthClients::Table)
                    .drop_column(OauthClients::Introspect)
                    .to_owned(),
            )
            .await
    }
}
