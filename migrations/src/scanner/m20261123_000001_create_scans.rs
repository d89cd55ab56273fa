use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Scans {
    Table,
    Id,
    /// The owner: the user id the gateway vouched for when the scan was asked for.
    UserId,
    /// The URL as asked for (normalised).
    Url,
    /// Where the redirect chain ended; null when no response arrived.
    FinalUrl,
    /// The final response's status; null when the target could not be reached.
    StatusCode,
    /// 0-100.
    Score,
    /// `A`, `B`, `C`, `D` or `F`.
    Grade,
    /// The replica that ran the scan (`scanner1`, ...).
    Instance,
    /// The whole report (headers, cookies, banners, redirects, error) as JSON.
    Result,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Scans::Table)
                    .col(uuid(Scans::Id).primary_key())
                    .col(uuid(Scans::UserId))
                    // Text: percent-encoding can make the normalised URL longer than the
                    // 2048 characters accepted.
                    .col(text(Scans::Url))
                    // A redirect may lead to a longer URL than the one asked for.
                    .col(text_null(Scans::FinalUrl))
                    .col(integer_null(Scans::StatusCode))
                    .col(integer(Scans::Score))
                    .col(string_len(Scans::Grade, 1))
                    .col(string_len(Scans::Instance, 64))
                    .col(json(Scans::Result))
                    .col(timestamp_with_time_zone(Scans::CreatedAt))
                    .check((
                        Alias::new("ck_scans_score"),
                        Expr::col(Scans::Score).between(0, 100),
                    ))
                    .check((
                        Alias::new("ck_scans_grade"),
                        Expr::col(Scans::Grade).is_in(["A", "B", "C", "D", "F"]),
                    ))
                    .to_owned(),
            )
            .await?;
        // A user's own list, newest first (id breaks ties).
        manager
            .create_index(
                Index::create()
                    .name("idx_scans_user_id_created_at_id")
                    .table(Scans::Table)
                    .col(Scans::UserId)
                    .col(Scans::CreatedAt)
                    .col(Scans::Id)
                    .to_owned(),
            )
            .await?;
        // An admin's list of every scan, newest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_scans_created_at_id")
                    .table(Scans::Table)
                    .col(Scans::CreatedAt)
                    .col(Scans::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Scans::Table).to_owned())
            .await
    }
}
