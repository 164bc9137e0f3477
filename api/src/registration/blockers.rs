//! What stops a draft from being submitted for its chosen scope.

use super::draft::{MailType, ProviderDraft, Scope};
use crate::{
    criteria::{CriteriaReport, Verdict},
    error::{PathSegment, UserError},
};

/// Everything that prevents submitting `draft` for its scope, each with the path of the field to
/// fix. Provider details, scope and contact info are needed for every scope; publisher, scenario
/// and verification details only for `GLOBAL`, where failed criteria of the sample e-mail block
/// too. A declared promotional mail type blocks every scope: actions are not for bulk mail.
pub fn submit_blockers(draft: &ProviderDraft, report: Option<&CriteriaReport>) -> Vec<UserError> {
    let mut blockers = Vec::new();
    let mut missing = |section: &'static str, what: &str| {
        blockers.push(UserError::new(
            [PathSegment::Field(section)],
            "SECTION_REQUIRED",
            format!("fill in {what}"),
        ));
    };
    if draft.provider_details.is_none() {
        missing(
            "providerDetails",
            "the provider details (sender addresses and target URLs)",
        );
    }
    if draft.scope.is_none() {
        missing("scope", "the scope of the submission");
    }
    if draft.contact_info.is_none() {
        missing("contactInfo", "the contact info");
    }
    if draft.scope == Some(Scope::Global) {
        if draft.publisher_info.is_none() {
            missing(
                "publisherInfo",
                "the publisher information (required for Global)",
            );
        }
        if draft.scenario_details.is_none() {
            missing(
                "scenarioDetails",
                "the scenario details (required for Global)",
            );
        }
        if draft.verification_details.is_none() {
            missing(
                "verificationDetails",
                "the verification details (required for Global)",
            );
        }
    }

    if draft
        .scenario_details
        .as_ref()
        .is_some_and(|s| s.mail_type == MailType::Promotional)
    {
        blockers.push(UserError::new(
            [
                PathSegment::Field("scenarioDetails"),
                PathSegment::Field("mailType"),
            ],
            "PROMOTIONAL_MAIL",
            "actionable messages are for transactional mail, not promotional bulk mail",
        ));
    }

    if draft.scope == Some(Scope::Global)
        && let Some(verification) = &draft.verification_details
    {
        let sample_path = [
            PathSegment::Field("verificationDetails"),
            PathSegment::Field("sampleEmail"),
        ];
        match (&verification.sample_email, report) {
            (None, _) => blockers.push(UserError::new(
                sample_path,
                "SAMPLE_EMAIL_REQUIRED",
                "paste a sample e-mail sent from your production servers, as received",
            )),
            (Some(_), None) => blockers.push(UserError::new(
                sample_path,
                "SAMPLE_EMAIL_NOT_CHECKED",
                "the sample e-mail has not been checked yet; save the verification details again",
            )),
            (Some(_), Some(report)) => {
                for check in report.checks.iter().filter(|c| c.verdict == Verdict::Fail) {
                    blockers.push(UserError::new(
                        sample_path.clone(),
                        format!("CRITERION_FAILED_{}", check.criterion.as_str()),
                        check.evidence.join(" "),
                    ));
                }
            }
        }
    }
    blockers
}
