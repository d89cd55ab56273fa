//! Second factors of local accounts: one TOTP secret per account (encrypted
//! by the service before it is stored; pending until its first code
//! confirms it), the last time step a code was accepted for (so a code is
//! never accepted twice, whichever replica sees it), and the account's
//! one-time recovery codes, stored as hashes.

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
enum TotpSecrets {
    Table,
    UserId,
    /// `v1:` + base64 of nonce || ciphertext (XChaCha20-Poly1305).
    Secret,
    /// Null while the enrolment waits for its first code.
    ConfirmedAt,
    /// The time step (Unix time / 30) of the last accepted code.
    LastStep,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RecoveryCodes {
    Table,
    Id,
    UserId,
    /// SHA-256 of the code, hex.
    CodeHash,
    UsedAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TotpSecrets::Table)
                    .col(uuid(TotpSecrets::UserId).primary_key())
                    .col(string_len(TotpSecrets::Secret, 255))
                    .col(timestamp_with_time_zone_null(TotpSecrets::ConfirmedAt))
                    .col(big_integer_null(TotpSecrets::LastStep))
                    .col(timestamp_with_time_zone(TotpSecrets::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_totp_secrets_user")
                            .from(TotpSecrets::Table, TotpSecrets::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RecoveryCodes::Table)
                    .col(uuid(RecoveryCodes::Id).primary_key())
                    .col(uuid(RecoveryCodes::UserId))
                    .col(string_len(RecoveryCodes::CodeHash, 64))
                    .col(timestamp_with_time_zone_null(RecoveryCodes::UsedAt))
                    .col(timestamp_with_time_zone(RecoveryCodes::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_recovery_codes_user")
                            .from(RecoveryCodes::Table, RecoveryCodes::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_recovery_codes_user_hash")
                    .table(RecoveryCodes::Table)
                    .col(RecoveryCodes::UserId)
                    .col(RecoveryCodes::CodeHash)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RecoveryCodes::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(TotpSecrets::Table).to_owned())
            .await
    }
}
