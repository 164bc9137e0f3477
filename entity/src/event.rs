//! One entry of a provider's append-only event log: its timeline and the source of realtime
//! notifications.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    /// Increasing; the cursor clients resume from.
    #[sea_orm(primary_key)]
    pub id: i64,
    pub provider_id: Uuid,
    pub submission_id: Option<Uuid>,
    /// `None` for the system (automatic approval, expired claims).
    pub actor_id: Option<Uuid>,
    pub kind: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub reason: Option<String>,
    /// Field paths concerned (edited fields, fields to change).
    pub fields: Json,
    /// Reviewer-only.
    pub internal: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
