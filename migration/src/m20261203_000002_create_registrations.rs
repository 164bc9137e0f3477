//! Registrations: providers with their mutable draft, frozen submissions, and the event log.

use sea_orm_migration::{prelude::*, schema::*};

use super::m20261203_000001_create_accounts::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Providers::Table)
                    .col(uuid(Providers::Id).primary_key())
                    .col(uuid(Providers::OwnerId))
                    .col(string_len(Providers::Name, 200))
                    .col(uuid_uniq(Providers::OriginatorId))
                    // The dashboard sections as one JSON document, and the criteria report
                    // computed from its sample e-mail.
                    .col(json_binary(Providers::Draft))
                    .col(json_binary_null(Providers::DraftReport))
                    .col(integer(Providers::Version))
                    .col(uuid_null(Providers::ActiveSubmissionId))
                    .col(timestamp_with_time_zone(Providers::CreatedAt))
                    .col(timestamp_with_time_zone(Providers::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Providers::Table, Providers::OwnerId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_providers_owner")
                    .table(Providers::Table)
                    .col(Providers::OwnerId)
                    .col(Providers::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Submissions::Table)
                    .col(uuid(Submissions::Id).primary_key())
                    .col(uuid(Submissions::ProviderId))
                    .col(integer(Submissions::Number))
                    .col(string_len(Submissions::Scope, 16))
                    .col(string_len(Submissions::Status, 24))
                    .col(json_binary(Submissions::Snapshot))
                    .col(json_binary_null(Submissions::Report))
                    // Denormalised for the review queue's text search.
                    .col(string_len(Submissions::ProviderName, 200))
                    .col(text(Submissions::SenderDomains))
                    .col(uuid(Submissions::SubmittedBy))
                    .col(timestamp_with_time_zone(Submissions::SubmittedAt))
                    // Kept from the first submission of a chain of resubmissions, so a
                    // resubmission keeps its place in the queue.
                    .col(timestamp_with_time_zone(Submissions::QueueEnteredAt))
                    .col(uuid_null(Submissions::ResubmissionOf))
                    .col(uuid_null(Submissions::PreferredReviewerId))
                    .col(uuid_null(Submissions::ClaimedBy))
                    .col(timestamp_with_time_zone_null(Submissions::ClaimExpiresAt))
                    .col(uuid_null(Submissions::DecidedBy))
                    .col(timestamp_with_time_zone_null(Submissions::DecidedAt))
                    .col(text_null(Submissions::DecisionReason))
                    .col(json_binary_null(Submissions::RequestedFields))
                    .col(integer(Submissions::Version))
                    .col(timestamp_with_time_zone(Submissions::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Submissions::Table, Submissions::ProviderId)
                            .to(Providers::Table, Providers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_submissions_provider_number")
                    .table(Submissions::Table)
                    .col(Submissions::ProviderId)
                    .col(Submissions::Number)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_submissions_queue")
                    .table(Submissions::Table)
                    .col(Submissions::Status)
                    .col(Submissions::QueueEnteredAt)
                    .col(Submissions::Id)
                    .to_owned(),
            )
            .await?;
        // At most one open submission per provider, enforced by the database so that two
        // concurrent submits cannot both succeed. Both SQLite and PostgreSQL have partial indexes.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX uq_submissions_one_open_per_provider ON submissions \
                 (provider_id) WHERE status IN ('SUBMITTED', 'IN_REVIEW', 'CHANGES_REQUESTED')",
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(big_pk_auto(Events::Id))
                    .col(uuid(Events::ProviderId))
                    .col(uuid_null(Events::SubmissionId))
                    .col(uuid_null(Events::ActorId))
                    .col(string_len(Events::Kind, 32))
                    .col(string_len_null(Events::FromStatus, 24))
                    .col(string_len_null(Events::ToStatus, 24))
                    .col(text_null(Events::Reason))
                    .col(json_binary(Events::Fields))
                    // Internal notes are for reviewers only.
                    .col(boolean(Events::Internal).default(false))
                    .col(timestamp_with_time_zone(Events::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Events::Table, Events::ProviderId)
                            .to(Providers::Table, Providers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_events_provider")
                    .table(Events::Table)
                    .col(Events::ProviderId)
                    .col(Events::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Events::Table.into_iden(),
            Submissions::Table.into_iden(),
            Providers::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Providers {
    Table,
    Id,
    OwnerId,
    Name,
    OriginatorId,
    Draft,
    DraftReport,
    Version,
    ActiveSubmissionId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Submissions {
    Table,
    Id,
    ProviderId,
    Number,
    Scope,
    Status,
    Snapshot,
    Report,
    ProviderName,
    SenderDomains,
    SubmittedBy,
    SubmittedAt,
    QueueEnteredAt,
    ResubmissionOf,
    PreferredReviewerId,
    ClaimedBy,
    ClaimExpiresAt,
    DecidedBy,
    DecidedAt,
    DecisionReason,
    RequestedFields,
    Version,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    ProviderId,
    SubmissionId,
    ActorId,
    Kind,
    FromStatus,
    ToStatus,
    Reason,
    Fields,
    Internal,
    CreatedAt,
}
