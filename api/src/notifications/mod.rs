//! Decision e-mails: written to an outbox in the transaction of the decision they announce,
//! then delivered by a background worker that retries until the mail goes through.

mod messages;

pub use messages::{Decision, decision_message};
