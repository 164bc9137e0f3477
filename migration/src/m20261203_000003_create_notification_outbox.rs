//! The notification outbox: e-mails written in the transaction of the change they announce and
//! delivered later by the mail worker.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // No foreign keys to providers or submissions: a message already promised to somebody
        // is still delivered if what it is about is deleted before the worker gets to it.
        manager
            .create_table(
                Table::create()
                    .table(NotificationOutbox::Table)
                    .col(uuid(NotificationOutbox::Id).primary_key())
                    .col(text(NotificationOutbox::Recipient))
                    .col(text(NotificationOutbox::Subject))
                    .col(text(NotificationOutbox::Body))
                    .col(string_len(NotificationOutbox::Kind, 32))
                    .col(uuid_null(NotificationOutbox::ProviderId))
                    .col(uuid_null(NotificationOutbox::SubmissionId))
                    .col(timestamp_with_time_zone(NotificationOutbox::CreatedAt))
                    .col(integer(NotificationOutbox::Attempts).default(0))
                    .col(timestamp_with_time_zone(NotificationOutbox::NextAttemptAt))
                    // A worker's lease on the row while it delivers it.
                    .col(timestamp_with_time_zone_null(
                        NotificationOutbox::LockedUntil,
                    ))
                    .col(timestamp_with_time_zone_null(NotificationOutbox::SentAt))
                    .col(text_null(NotificationOutbox::LastError))
                    .to_owned(),
            )
            .await?;
        // The worker's poll: unsent rows whose next attempt is due.
        manager
            .create_index(
                Index::create()
                    .name("idx_notification_outbox_due")
                    .table(NotificationOutbox::Table)
                    .col(NotificationOutbox::SentAt)
                    .col(NotificationOutbox::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(NotificationOutbox::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum NotificationOutbox {
    Table,
    Id,
    Recipient,
    Subject,
    Body,
    Kind,
    ProviderId,
    SubmissionId,
    CreatedAt,
    Attempts,
    NextAttemptAt,
    LockedUntil,
    SentAt,
    LastError,
}
