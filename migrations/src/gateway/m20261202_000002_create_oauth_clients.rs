//! Machine clients (OAuth 2.0 client credentials): each client and its
//! secrets, stored only as argon2id hashes (two at once during a rotation).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OauthClients {
    Table,
    /// The principal id services see (tokens' `sub`).
    Id,
    /// What the client authenticates with (`client_id`), unique.
    ClientId,
    Name,
    /// Space-separated scopes it may be granted.
    Scopes,
    /// Comma-separated roles its tokens carry.
    Roles,
    IsActive,
    /// Bumped whenever the client's tokens are revoked (deactivation, a
    /// change of scopes or roles): tokens name it in their `sid`.
    Generation,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OauthClientSecrets {
    Table,
    Id,
    ClientId,
    Hash,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OauthClients::Table)
                    .if_not_exists()
                    .col(uuid(OauthClients::Id).primary_key())
                    .col(string_len_uniq(OauthClients::ClientId, 64))
                    .col(string_len(OauthClients::Name, 128))
                    .col(text(OauthClients::Scopes))
                    .col(text(OauthClients::Roles))
                    .col(boolean(OauthClients::IsActive))
                    .col(big_integer(OauthClients::Generation).default(0))
                    .col(timestamp_with_time_zone(OauthClients::CreatedAt))
                    .col(timestamp_with_time_zone(OauthClients::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OauthClientSecrets::Table)
                    .if_not_exists()
                    .col(uuid(OauthClientSecrets::Id).primary_key())
                    .col(uuid(OauthClientSecrets::ClientId))
                    .col(string_len(OauthClientSecrets::Hash, 256))
                    .col(timestamp_with_time_zone(OauthClientSecrets::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OauthClientSecrets::Table, OauthClientSecrets::ClientId)
                            .to(OauthClients::Table, OauthClients::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_oauth_client_secrets_client")
                    .table(OauthClientSecrets::Table)
                    .col(OauthClientSecrets::ClientId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OauthClientSecrets::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(OauthClients::Table).to_owned())
            .await
    }
}
