use sea_orm::entity::prelude::*;

use crate::domain::Grade;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "scans")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub url: String,
    pub final_url: Option<String>,
    pub status_code: Option<i32>,
    pub score: i32,
    pub grade: Grade,
    pub instance: String,
    /// The whole `report::Report`.
    pub result: Json,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
