//! A provider: the service being registered, with its mutable draft of the dashboard sections.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "providers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_id: Uuid,
    /// The friendly name the owner chose.
    pub name: String,
    /// Issued at creation; the identifier a real card carries.
    #[sea_orm(unique)]
    pub originator_id: Uuid,
    /// The dashboard sections, as the API's draft document.
    pub draft: Json,
    /// The criteria report of the draft's sample e-mail, when it has one.
    pub draft_report: Option<Json>,
    /// Incremented by every edit; edits name the version they were made against.
    pub version: i32,
    /// The approved submission currently in force.
    pub active_submission_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::submission::Entity")]
    Submission,
}

impl Related<super::submission::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Submission.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
