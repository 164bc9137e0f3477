//! Where a submission stands in review.

use async_graphql::Enum;

/// The status of a submission.
///
/// ```text
/// SUBMITTED --claim--> IN_REVIEW --approve--> APPROVED --newer approved--> SUPERSEDED
///     ^   \               |  \--reject--> REJECTED           \--revoke--> REVOKED
///     |    \              |   \--requestChanges--> CHANGES_REQUESTED --resubmit--> RESUBMITTED
///     |     \--withdraw--> WITHDRAWN (owner, before a decision)
///     +--release / claim lease expired-- IN_REVIEW
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum SubmissionStatus {
    /// Waiting in the review queue.
    Submitted,
    /// Claimed by a reviewer.
    InReview,
    /// A reviewer asked for changes; the owner edits the draft and submits again.
    ChangesRequested,
    /// In force: the provider's active registration.
    Approved,
    Rejected,
    /// Withdrawn by its owner before a decision.
    Withdrawn,
    /// Replaced by a newer approved submission.
    Superseded,
    /// Approval taken back by a reviewer.
    Revoked,
    /// Answered by a newer submission after changes were requested.
    Resubmitted,
}

impl SubmissionStatus {
    /// Statuses of which a provider may have at most one submission at a time.
    pub const OPEN: [Self; 3] = [Self::Submitted, Self::InReview, Self::ChangesRequested];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "SUBMITTED",
            Self::InReview => "IN_REVIEW",
            Self::ChangesRequested => "CHANGES_REQUESTED",
            Self::Approved => "APPROVED",
            Self::Rejected => "REJECTED",
            Self::Withdrawn => "WITHDRAWN",
            Self::Superseded => "SUPERSEDED",
            Self::Revoked => "REVOKED",
            Self::Resubmitted => "RESUBMITTED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::Submitted,
            Self::InReview,
            Self::ChangesRequested,
            Self::Approved,
            Self::Rejected,
            Self::Withdrawn,
            Self::Superseded,
            Self::Revoked,
            Self::Resubmitted,
        ]
        .into_iter()
        .find(|status| status.as_str() == value)
    }

    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }
}
