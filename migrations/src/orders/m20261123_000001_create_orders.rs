use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    /// The owner: the user id the gateway vouched for when the order was placed.
    UserId,
    Item,
    Quantity,
    Address,
    /// `pending`, `confirmed` or `cancelled`.
    Status,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .col(uuid(Orders::Id).primary_key())
                    .col(uuid(Orders::UserId))
                    .col(string_len(Orders::Item, 200))
                    .col(integer(Orders::Quantity))
                    .col(string_len(Orders::Address, 500))
                    .col(string_len(Orders::Status, 16))
                    .col(timestamp_with_time_zone(Orders::CreatedAt))
                    .col(timestamp_with_time_zone(Orders::UpdatedAt))
                    // The service validates both; the checks keep any other
                    // writer (a manual fix, a future migration) honest.
                    .check((
                        Alias::new("ck_orders_status"),
                        Expr::col(Orders::Status).is_in(["pending", "confirmed", "cancelled"]),
                    ))
                    .check((
                        Alias::new("ck_orders_quantity"),
                        Expr::col(Orders::Quantity).between(1, 1000),
                    ))
                    .to_owned(),
            )
            .await?;
        // A user's own list, newest first (id breaks ties).
        manager
            .create_index(
                Index::create()
                    .name("idx_orders_user_id_created_at_id")
                    .table(Orders::Table)
                    .col(Orders::UserId)
                    .col(Orders::CreatedAt)
                    .col(Orders::Id)
                    .to_owned(),
            )
            .await?;
        // An admin's list of every order, newest first.
        manager
            .create_index(
                Index::create()
                    .name("idx_orders_created_at_id")
                    .table(Orders::Table)
                    .col(Orders::CreatedAt)
                    .col(Orders::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Orders::Table).to_owned())
            .await
    }
}
