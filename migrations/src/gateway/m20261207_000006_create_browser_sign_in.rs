//! Signing in with a browser (#31): the browser sessions the hosted login
//! page starts (a random cookie value, stored only as its SHA-256 hash,
//! with idle and absolute expiries and the login's methods); the
//! authorization codes of the OpenID Connect code flow (hashed, single use,
//! bound to the client, the redirect URI and the PKCE challenge); the
//! consents users gave third-party applications; the application fields of
//! a registered client; and, on each refresh-token family, the application
//! and browser session it was issued to.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BrowserSessions {
    Table,
    Id,
    /// SHA-256 of the cookie value, hex.
    TokenHash,
    UserId,
    /// Space-separated RFC 8176 methods of the login.
    Amr,
    AuthTime,
    CreatedAt,
    LastSeenAt,
    /// The absolute end; the idle end is `last_seen_at` plus the idle
    /// timeout.
    ExpiresAt,
    RevokedAt,
    /// The client address and user agent at sign-in (for the user's list).
    Client,
    UserAgent,
}

#[derive(DeriveIden)]
enum AuthorizationCodes {
    Table,
    Id,
    /// SHA-256 of the code, hex.
    CodeHash,
    /// The registered client's principal id.
    ClientId,
    RedirectUri,
    /// The PKCE S256 challenge (RFC 7636).
    CodeChallenge,
    Scope,
    Nonce,
    UserId,
    BrowserSessionId,
    Amr,
    AuthTime,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    /// The refresh-token family the code was exchanged for: a second use
    /// revokes it.
    FamilyId,
}

#[derive(DeriveIden)]
enum Consents {
    Table,
    UserId,
    ClientId,
    /// Space-separated scopes granted.
    Scope,
    GrantedAt,
}

#[derive(DeriveIden)]
enum OauthClients {
    Table,
    /// Space-separated, each exact.
    RedirectUris,
    PostLogoutRedirectUris,
    /// Space-separated OAuth grant types.
    GrantTypes,
    /// No secret: PKCE only (`token_endpoint_auth_method: none`).
    Public,
    /// No consent screen.
    FirstParty,
}

#[derive(DeriveIden)]
enum SessionFamilies {
    Table,
    /// The application a code-flow family was issued to (its principal id).
    ClientId,
    /// The scopes granted to it.
    Scope,
    BrowserSessionId,
    /// When the sign-in behind it happened (a code-flow family starts
    /// later than its sign-in).
    AuthTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(BrowserSessions::Table)
                    .col(uuid(BrowserSessions::Id).primary_key())
                    .col(string_len(BrowserSessions::TokenHash, 64).unique_key())
                    .col(uuid(BrowserSessions::UserId))
                    .col(string_len(BrowserSessions::Amr, 64))
                    .col(timestamp_with_time_zone(BrowserSessions::AuthTime))
                    .col(timestamp_with_time_zone(BrowserSessions::CreatedAt))
                    .col(timestamp_with_time_zone(BrowserSessions::LastSeenAt))
                    .col(timestamp_with_time_zone(BrowserSessions::ExpiresAt))
                    .col(timestamp_with_time_zone_null(BrowserSessions::RevokedAt))
                    .col(string_len(BrowserSessions::Client, 64))
                    .col(string_len(BrowserSessions::UserAgent, 256))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_browser_sessions_user")
                    .table(BrowserSessions::Table)
                    .col(BrowserSessions::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuthorizationCodes::Table)
                    .col(uuid(AuthorizationCodes::Id).primary_key())
                    .col(string_len(AuthorizationCodes::CodeHash, 64).unique_key())
                    .col(uuid(AuthorizationCodes::ClientId))
                    .col(string_len(AuthorizationCodes::RedirectUri, 512))
                    .col(string_len(AuthorizationCodes::CodeChallenge, 128))
                    .col(string_len(AuthorizationCodes::Scope, 1024))
                    .col(string_len_null(AuthorizationCodes::Nonce, 512))
                    .col(uuid(AuthorizationCodes::UserId))
                    .col(uuid(AuthorizationCodes::BrowserSessionId))
                    .col(string_len(AuthorizationCodes::Amr, 64))
                    .col(timestamp_with_time_zone(AuthorizationCodes::AuthTime))
                    .col(timestamp_with_time_zone(AuthorizationCodes::CreatedAt))
                    .col(timestamp_with_time_zone(AuthorizationCodes::ExpiresAt))
                    .col(timestamp_with_time_zone_null(AuthorizationCodes::UsedAt))
                    .col(uuid_null(AuthorizationCodes::FamilyId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Consents::Table)
                    .col(uuid(Consents::UserId))
                    .col(uuid(Consents::ClientId))
                    .col(string_len(Consents::Scope, 1024))
                    .col(timestamp_with_time_zone(Consents::GrantedAt))
                    .primary_key(
                        Index::create()
                            .col(Consents::UserId)
                            .col(Consents::ClientId),
                    )
                    .to_owned(),
            )
            .await?;
        // SQLite adds one column per statement.
        for col in [
            string_len(OauthClients::RedirectUris, 4096).default(""),
            string_len(OauthClients::PostLogoutRedirectUris, 4096).default(""),
            string_len(OauthClients::GrantTypes, 256).default("client_credentials"),
            boolean(OauthClients::Public).default(false),
            boolean(OauthClients::FirstParty).default(false),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(OauthClients::Table)
                        .add_column(col)
                        .to_owned(),
                )
                .await?;
        }
        for col in [
            uuid_null(SessionFamilies::ClientId),
            string_len_null(SessionFamilies::Scope, 1024),
            uuid_null(SessionFamilies::BrowserSessionId),
            timestamp_with_time_zone_null(SessionFamilies::AuthTime),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(SessionFamilies::Table)
                        .add_column(col)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            SessionFamilies::ClientId,
            SessionFamilies::Scope,
            SessionFamilies::BrowserSessionId,
            SessionFamilies::AuthTime,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(SessionFamilies::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        for col in [
            OauthClients::RedirectUris,
            OauthClients::PostLogoutRedirectUris,
            OauthClients::GrantTypes,
            OauthClients::Public,
            OauthClients::FirstParty,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(OauthClients::Table)
                        .drop_column(col)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(Consents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AuthorizationCodes::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(BrowserSessions::Table).to_owned())
            .await?;
        Ok(())
    }
}
