//! Automatic checking of a developer's sample actionable email against the Global-scope
//! registration criteria: the public API ([`check_sample`], the report types) and the order in
//! which the pieces run.
//!
//! The facts follow `tests/fixtures/samples/README.md` rule for rule; [`SampleFacts`] serialises
//! to the same names and values as the `expected` objects of its `cases.json`.

mod card;
mod checks;
mod dkim;
mod dns;
pub mod domains;
mod headers;
mod html;
mod sample;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use card::MAX_CARD_DEPTH;
pub use dkim::MAX_DKIM_SIGNATURES;
pub use dns::{DnsLookupError, FixtureTxt, SystemTxt, TxtLookup};
pub use sample::MAX_MIME_DEPTH;

/// Largest sample accepted, checked before any parsing.
pub const MAX_SAMPLE_BYTES: usize = 2 * 1024 * 1024;

/// What the registration says, already normalised by the caller: sender addresses as lower-case
/// local part + '@' + lower-case IDNA A-label domain; target URLs as parsed https URLs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistrationFacts {
    /// Registered static sender addresses.
    pub senders: Vec<String>,
    /// Registered target URLs; each covers its host and that host's subdomains.
    pub target_urls: Vec<url::Url>,
    /// The mail type the provider declared, if the registration asks for one.
    pub declared_mail_type: Option<DeclaredMailType>,
}

/// The kind of mail a provider says the service sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeclaredMailType {
    /// Mail triggered by a user's action or an event concerning them (approvals, alerts).
    Transactional,
    /// Marketing or other bulk mail.
    Promotional,
}

/// Why a sample was rejected before any criterion could be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    /// The upload is larger than [`MAX_SAMPLE_BYTES`].
    #[error(
        "The sample is larger than {limit_bytes} bytes. Upload the .eml of one message as it was received, without large attachments."
    )]
    TooLarge {
        /// The limit in bytes.
        limit_bytes: usize,
    },
    /// The upload is not an email message with a header section and a From address.
    #[error(
        "The file is not an email message ({detail}). Upload the raw message source (.eml) as received, with all its headers, not a forwarded copy, screenshot or HTML export."
    )]
    NotAMessage {
        /// What is missing.
        detail: String,
    },
    /// The MIME structure nests deeper than [`MAX_MIME_DEPTH`].
    #[error(
        "The message's MIME structure nests more than {limit} levels deep. Send a sample with the usual structure (multipart/alternative with a text and an HTML part)."
    )]
    TooDeeplyNested {
        /// The limit in levels.
        limit: usize,
    },
}

impl SampleError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SampleError::TooLarge { .. } => "SAMPLE_TOO_LARGE",
            SampleError::NotAMessage { .. } => "SAMPLE_NOT_A_MESSAGE",
            SampleError::TooDeeplyNested { .. } => "SAMPLE_TOO_DEEPLY_NESTED",
        }
    }
}

/// A verdict on one criterion, or on the whole sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// Meets the criterion.
    Pass,
    /// Acceptable, but should be improved.
    Warn,
    /// Does not meet the criterion.
    Fail,
    /// Cannot be checked from one email; a reviewer attests it.
    Manual,
}

/// The registration criteria checked for a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Criterion {
    /// DKIM or SPF passes.
    Authenticated,
    /// The registrable domain of a passing DKIM `d=` or SPF domain matches that of From.
    DomainAligned,
    /// From is one registered static sender.
    SenderRegistered,
    /// An Adaptive Card or MessageCard is present and valid.
    MarkupValid,
    /// The sample was sent directly, not forwarded.
    NotForwarded,
    /// Every action URL is https and under a registered target URL.
    ActionsWithinTargets,
    /// OpenUrl/OpenUri actions deep-link to the specific page (warning).
    DeepLinks,
    /// Button labels say what the button does (warning).
    ClearLabels,
    /// Transactional, not promotional bulk mail.
    Transactional,
    /// Consistent sending-volume history (reviewer).
    SendingVolumeHistory,
    /// Low spam-complaint rate (reviewer).
    SpamComplaintRate,
}

impl Criterion {
    /// The stable name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authenticated => "AUTHENTICATED",
            Self::DomainAligned => "DOMAIN_ALIGNED",
            Self::SenderRegistered => "SENDER_REGISTERED",
            Self::MarkupValid => "MARKUP_VALID",
            Self::NotForwarded => "NOT_FORWARDED",
            Self::ActionsWithinTargets => "ACTIONS_WITHIN_TARGETS",
            Self::DeepLinks => "DEEP_LINKS",
            Self::ClearLabels => "CLEAR_LABELS",
            Self::Transactional => "TRANSACTIONAL",
            Self::SendingVolumeHistory => "SENDING_VOLUME_HISTORY",
            Self::SpamComplaintRate => "SPAM_COMPLAINT_RATE",
        }
    }
}

/// DKIM outcome of the sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DkimStatus {
    /// At least one signature verifies.
    Pass,
    /// There are signatures, none verifies.
    Fail,
    /// No DKIM-Signature header.
    None,
}

/// SPF result as recorded by the receiver in the topmost Authentication-Results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfStatus {
    /// `spf=pass`.
    Pass,
    /// Any result other than pass or none.
    Fail,
    /// `spf=none`, no `spf=` result, or no Authentication-Results header.
    None,
}

/// The card markup found in the HTML body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarkupKind {
    /// An Adaptive Card in `application/adaptivecard+json`.
    Adaptive,
    /// A legacy MessageCard in `application/ld+json`.
    MessageCard,
    /// A card script whose content is not the expected card JSON.
    Invalid,
    /// No card script.
    None,
}

/// One DKIM-Signature and what verifying it gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DkimSignatureFact {
    /// The signing domain `d=` (absent when the signature could not be parsed).
    pub d: Option<String>,
    /// The selector `s=`.
    pub s: Option<String>,
    /// True only when the result is pass.
    pub verified: bool,
    /// The verifier's result and reason, e.g. `neutral: Calculated body hash does not match
    /// signature hash`.
    pub result: String,
}

/// One URL-bearing action of the card and how it fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardActionFact {
    /// Where it is in the card (JSON path), e.g. `actions[1].card.actions[0]`.
    pub path: String,
    /// The action's type as written (`Action.Http`, `OpenUri`, ...).
    #[serde(rename = "type")]
    pub action_type: String,
    /// The field holding the URL (`url`, `target`, `targets[0].uri`).
    pub field: String,
    /// The URL as written, if the field holds a string.
    pub url: Option<String>,
    /// https and under a registered target.
    pub within_targets: bool,
    /// For page-opening actions: whether the URL is a deep link (`None` when not applicable or
    /// unparseable).
    pub deep_link: Option<bool>,
}

/// The facts established from the sample. The first ten fields are exactly the `expected`
/// fields of the samples' `cases.json`, with the same names, values and rules; `overall` here
/// follows that README rule exactly (labels and the declared mail type do not count).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SampleFacts {
    /// DKIM: pass / fail / none.
    pub dkim: DkimStatus,
    /// SPF from the topmost Authentication-Results: pass / fail / none.
    pub spf_from_header: SpfStatus,
    /// Relaxed alignment of a verified DKIM `d=` or passing SPF domain with From.
    pub aligned: bool,
    /// adaptive / messagecard / invalid / none.
    pub markup: MarkupKind,
    /// Any forwarding signal.
    pub forwarded: bool,
    /// Every action URL is https and under a registered target (vacuously true).
    pub actions_within_targets: bool,
    /// Every OpenUrl/OpenUri URL is a deep link (vacuously true).
    pub deep_links: bool,
    /// `Precedence: bulk|list|junk`.
    pub promotional: bool,
    /// From is exactly one mailbox equal to a registered sender.
    pub sender_registered: bool,
    /// PASS / WARN / FAIL by the README rule.
    pub overall: Verdict,
    /// The DKIM-Signatures, topmost first, at most 20 (every one is verified).
    pub dkim_signatures: Vec<DkimSignatureFact>,
    /// The From mailbox, normalised (lower case, A-label domain), when there is exactly one.
    pub from_address: Option<String>,
    /// Its domain as an A-label.
    pub from_domain: Option<String>,
    /// Its registrable domain.
    pub from_registrable_domain: Option<String>,
    /// The `smtp.mailfrom` domain from the topmost Authentication-Results.
    pub spf_domain: Option<String>,
    /// The decoded subject.
    pub subject: Option<String>,
    /// The card's URL-bearing actions, at most 100 (every action is checked; the checks'
    /// evidence names those that fail).
    pub card_actions: Vec<CardActionFact>,
}

/// The verdict on one criterion with the evidence a person needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CriterionCheck {
    /// Which criterion.
    pub criterion: Criterion,
    /// Its verdict.
    pub verdict: Verdict,
    /// Human-readable lines pointing at what was looked at and what to fix; at most 50, the
    /// last then saying how many were left out.
    pub evidence: Vec<String>,
}

/// The result of checking a sample; stored as JSON and frozen with each submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CriteriaReport {
    /// The established facts.
    pub facts: SampleFacts,
    /// One check per criterion, in [`Criterion`] order.
    pub checks: Vec<CriterionCheck>,
    /// The worst verdict of the checks (MANUAL ignored): FAIL, else WARN, else PASS. It can be
    /// stricter than `facts.overall`: a CLEAR_LABELS warning makes it WARN, and a registration
    /// that declares promotional mail makes TRANSACTIONAL, and so this, FAIL.
    pub overall: Verdict,
}

impl CriteriaReport {
    /// A report as stored in a JSON column; `None` when absent or unreadable.
    pub fn from_stored(value: Option<&serde_json::Value>) -> Option<Self> {
        value.and_then(|v| Self::deserialize(v).ok())
    }
}

/// Checks a raw sample email (as uploaded) against the registration.
///
/// The length is checked before anything is parsed. DKIM keys come from `dns` only: verification
/// never queries DNS by itself, so a fixture gives fully offline, repeatable results.
pub async fn check_sample(
    raw: &[u8],
    registration: &RegistrationFacts,
    dns: &dyn TxtLookup,
) -> Result<CriteriaReport, SampleError> {
    if raw.len() > MAX_SAMPLE_BYTES {
        return Err(SampleError::TooLarge {
            limit_bytes: MAX_SAMPLE_BYTES,
        });
    }
    // Everything synchronous first, into owned data, so no parsed message lives across an await.
    let inspected = sample::inspect(raw)?;
    let signatures = dkim::verify_signatures(raw, dns).await;
    Ok(checks::build_report(inspected, signatures, registration))
}
