//! Registering a provider: the draft's dashboard sections, what blocks a submit, and freezing
//! the draft into numbered submissions.

mod blockers;
pub mod diff;
pub mod draft;
mod form;
mod service;
mod status;

pub use blockers::submit_blockers;
pub use draft::{MailType, ProviderDraft, Scope, SectionEdit};
pub use form::{FormPath, form_paths, is_form_path, parse_form_path};
pub use service::{
    activate_submission, can_see_provider, create_provider, decision_notification, owned_provider,
    registration_facts, submit_for_review, update_draft, visible_provider, visible_submission,
    withdraw_submission,
};
pub use status::SubmissionStatus;
