//! One e-mail in the notification outbox: written with the change it announces, then delivered
//! (and retried) by the mail worker.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notification_outbox")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// The address the message goes to.
    pub recipient: String,
    pub subject: String,
    /// Plain text.
    pub body: String,
    /// What the message announces, e.g. `APPROVED`.
    pub kind: String,
    pub provider_id: Option<Uuid>,
    pub submission_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    /// Delivery attempts made so far, failed or not.
    pub attempts: i32,
    /// Not delivered before this time (retries back off).
    pub next_attempt_at: DateTimeUtc,
    /// Set while a worker delivers the message; other workers leave it alone until then.
    pub locked_until: Option<DateTimeUtc>,
    /// Set once delivered; the row is kept as a record.
    pub sent_at: Option<DateTimeUtc>,
    /// Why the latest failed attempt failed (kept after a later success).
    pub last_error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
