//! A submission: an immutable, numbered snapshot of a provider's draft for one scope, and where
//! it stands in review.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "submissions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub provider_id: Uuid,
    /// 1, 2, 3… per provider.
    pub number: i32,
    pub scope: String,
    pub status: String,
    /// The frozen draft.
    pub snapshot: Json,
    /// The frozen criteria report.
    pub report: Option<Json>,
    pub provider_name: String,
    /// Registrable and full sender domains, space-separated, for the queue's text search.
    pub sender_domains: String,
    pub submitted_by: Uuid,
    pub submitted_at: DateTimeUtc,
    pub queue_entered_at: DateTimeUtc,
    pub resubmission_of: Option<Uuid>,
    /// The reviewer who asked for the changes this resubmission answers.
    pub preferred_reviewer_id: Option<Uuid>,
    pub claimed_by: Option<Uuid>,
    pub claim_expires_at: Option<DateTimeUtc>,
    pub decided_by: Option<Uuid>,
    pub decided_at: Option<DateTimeUtc>,
    pub decision_reason: Option<String>,
    pub requested_fields: Option<Json>,
    /// The reviewer's attestations of the criteria checked by hand, set on approval.
    pub attestations: Option<Json>,
    pub version: i32,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::provider::Entity",
        from = "Column::ProviderId",
        to = "super::provider::Column::Id",
        on_delete = "Cascade"
    )]
    Provider,
}

impl Related<super::provider::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Provider.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
