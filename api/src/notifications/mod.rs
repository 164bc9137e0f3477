//! Decision e-mails: written to an outbox in the transaction of the decision they announce,
//! then delivered by a background worker that retries until the mail goes through.
//!
//! A decision commits with its message or not at all, and a mail server that is down delays
//! mail without failing or losing anything. Delivery is at least once: a message is sent twice
//! only if an instance stops between handing it to the server and recording that (or its clock
//! is minutes off another instance's); the `Message-ID` stays the same, so mail clients can tell.
//!
//! ```no_run
//! # use dashboard::{db::Db, notifications::{self, Decision, Notification, decision_message}};
//! # async fn approve(db: &Db, contact: String, provider: uuid::Uuid, submission: uuid::Uuid)
//! # -> Result<(), sea_orm::DbErr> {
//! let txn = db.begin_write().await?;
//! // ... update the submission and record its event in `txn` ...
//! let (subject, body) =
//!     decision_message(Decision::Approved, "Contoso Alerts", 3, "GLOBAL", None, &[]);
//! let message = Notification {
//!     recipient: contact,
//!     subject,
//!     body,
//!     kind: Decision::Approved.kind(),
//!     provider_id: Some(provider),
//!     submission_id: Some(submission),
//! };
//! notifications::enqueue(&txn, message).await?;
//! txn.commit().await?;
//! # Ok(())
//! # }
//! ```

mod messages;
pub mod transport;
pub mod worker;

use std::fmt;

use chrono::Utc;
use entity::notification;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};
use uuid::Uuid;

pub use messages::{Decision, decision_message};
pub use transport::{DeliveryError, Mailer};
pub use worker::MailWorker;

/// An e-mail to send once the caller's transaction commits.
#[derive(Clone, PartialEq, Eq)]
pub struct Notification {
    /// The address to write to.
    pub recipient: String,
    pub subject: String,
    /// Plain text; line breaks as `\n`.
    pub body: String,
    /// What the message announces, at most 32 characters; for decisions [`Decision::kind`].
    pub kind: &'static str,
    pub provider_id: Option<Uuid>,
    pub submission_id: Option<Uuid>,
}

/// Leaves out the recipient and the text, so that a notification logged by mistake leaks
/// neither.
impl fmt::Debug for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notification")
            .field("kind", &self.kind)
            .field("provider_id", &self.provider_id)
            .field("submission_id", &self.submission_id)
            .finish_non_exhaustive()
    }
}

/// Writes `notification` to the outbox through `conn`, normally the caller's write
/// transaction, so that the message exists exactly when the change it announces commits.
///
/// Only a database write: no network, nothing that waits on a mail server. The worker sends
/// the message after the commit, within a poll interval.
pub async fn enqueue(conn: &impl ConnectionTrait, notification: Notification) -> Result<(), DbErr> {
    let now = Utc::now();
    let id = Uuid::now_v7();
    let row = notification::ActiveModel {
        id: Set(id),
        recipient: Set(notification.recipient),
        subject: Set(notification.subject),
        body: Set(notification.body),
        kind: Set(notification.kind.to_owned()),
        provider_id: Set(notification.provider_id),
        submission_id: Set(notification.submission_id),
        created_at: Set(now),
        attempts: Set(0),
        next_attempt_at: Set(now),
        locked_until: Set(None),
        sent_at: Set(None),
        last_error: Set(None),
    };
    notification::Entity::insert(row)
        .exec_without_returning(conn)
        .await?;
    tracing::debug!(
        notification.id = %id,
        notification.kind = notification.kind,
        "notification queued"
    );
    Ok(())
}
