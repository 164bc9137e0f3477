//! Reviewing submissions: the queue, exclusive claims, decisions, comments and attestations.

mod queue;
mod service;

pub use queue::{ClaimFilter, QueueCursor, QueueFilter, QueueOrder, QueuePage, review_queue};
pub use service::{
    Attestation, Decision, add_comment, claim_submission, decide, release_expired_claims,
    release_submission, revoke_approval,
};
