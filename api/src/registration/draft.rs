//! The dashboard sections of a provider's draft, as parsed domain values.
//!
//! The draft is stored as one JSON document. Every value in it went through a domain type's
//! parser, and deserialising parses again, so a draft edited, submitted or mailed from can never
//! hold an invalid value. The API shows the stored sections without parsing them again
//! (`graphql::sections`).

use async_graphql::Enum;
use serde::{Deserialize, Serialize};

use crate::domain::{
    BoundedText, EmailAddress, HttpsUrl, PhoneNumber, RsaPublicKey, SenderAddress, TargetUrl,
};

/// Where actionable messages from the service are enabled. One scope per submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Enum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Scope {
    /// Actionable messages from the service to the submitter's own mailbox.
    MyMailbox,
    /// To any mailbox within the submitter's organization (line-of-business apps).
    Organization,
    /// To any mailbox; needs publisher, scenario and verification details.
    Global,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MyMailbox => "MY_MAILBOX",
            Self::Organization => "ORGANIZATION",
            Self::Global => "GLOBAL",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "MY_MAILBOX" => Some(Self::MyMailbox),
            "ORGANIZATION" => Some(Self::Organization),
            "GLOBAL" => Some(Self::Global),
            _ => None,
        }
    }
}

/// The kind of mail the service sends with actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Enum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MailType {
    /// Triggered by an event concerning the recipient (approvals, alerts); what actions are for.
    Transactional,
    /// Marketing or other bulk mail; actions are refused for it.
    Promotional,
}

/// "Details of your provider": who sends, and which URLs the actions call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderDetails {
    pub sender_emails: Vec<SenderAddress>,
    pub target_urls: Vec<TargetUrl>,
    pub public_key: Option<RsaPublicKey>,
}

/// "Contact info": how reviewers reach the submitter; decisions are e-mailed here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactInfo {
    pub name: BoundedText,
    pub email: EmailAddress,
    pub phone: Option<PhoneNumber>,
}

/// "Publisher information" (Global scope).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublisherInfo {
    pub publisher_name: BoundedText,
    pub website_url: HttpsUrl,
    pub support_url: HttpsUrl,
    pub description: BoundedText,
}

/// "Scenario details" (Global scope).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioDetails {
    pub description: BoundedText,
    pub action_usage: BoundedText,
    pub expected_daily_volume: u32,
    pub mail_type: MailType,
    pub sending_history_weeks: u32,
}

/// "Verification details" (Global scope): instructions for reviewers and the raw sample e-mail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationDetails {
    pub reviewer_instructions: BoundedText,
    pub sample_email: Option<String>,
}

/// All sections; each is absent until first saved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderDraft {
    pub provider_details: Option<ProviderDetails>,
    pub scope: Option<Scope>,
    pub contact_info: Option<ContactInfo>,
    pub publisher_info: Option<PublisherInfo>,
    pub scenario_details: Option<ScenarioDetails>,
    pub verification_details: Option<VerificationDetails>,
}

/// One section edit, already parsed.
#[derive(Clone, Debug)]
pub enum SectionEdit {
    ProviderDetails(ProviderDetails),
    Scope(Scope),
    ContactInfo(ContactInfo),
    PublisherInfo(PublisherInfo),
    ScenarioDetails(ScenarioDetails),
    VerificationDetails(VerificationDetails),
}

impl SectionEdit {
    /// The section's name in the draft document and the API.
    pub fn section_name(&self) -> &'static str {
        match self {
            Self::ProviderDetails(_) => "providerDetails",
            Self::Scope(_) => "scope",
            Self::ContactInfo(_) => "contactInfo",
            Self::PublisherInfo(_) => "publisherInfo",
            Self::ScenarioDetails(_) => "scenarioDetails",
            Self::VerificationDetails(_) => "verificationDetails",
        }
    }

    /// Whether the edit can change the criteria report of the sample e-mail.
    pub fn affects_criteria(&self) -> bool {
        matches!(
            self,
            Self::ProviderDetails(_) | Self::ScenarioDetails(_) | Self::VerificationDetails(_)
        )
    }
}

impl ProviderDraft {
    pub fn from_json(value: &serde_json::Value) -> anyhow::Result<Self> {
        // Deserialising from the borrowed value avoids copying a draft that may hold a
        // 2 MiB sample e-mail.
        Ok(Self::deserialize(value)?)
    }

    pub fn to_json(&self) -> serde_json::Value {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Applies an edit and returns the paths of the fields whose values changed.
    pub fn apply(&mut self, edit: SectionEdit) -> Vec<String> {
        let before = self.to_json();
        match edit {
            SectionEdit::ProviderDetails(section) => self.provider_details = Some(section),
            SectionEdit::Scope(scope) => self.scope = Some(scope),
            SectionEdit::ContactInfo(section) => self.contact_info = Some(section),
            SectionEdit::PublisherInfo(section) => self.publisher_info = Some(section),
            SectionEdit::ScenarioDetails(section) => self.scenario_details = Some(section),
            SectionEdit::VerificationDetails(section) => self.verification_details = Some(section),
        }
        super::diff::changes(&before, &self.to_json())
            .into_iter()
            .map(|change| change.path)
            .collect()
    }
}

/// Drafts for tests.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;

    fn text(value: &str) -> BoundedText {
        BoundedText::parse(value, 100, true).expect("text")
    }

    /// A draft with every section and every optional field filled.
    pub(crate) fn full_draft() -> ProviderDraft {
        ProviderDraft {
            provider_details: Some(ProviderDetails {
                sender_emails: vec![SenderAddress::parse("a@contoso.com").expect("sender")],
                target_urls: vec![TargetUrl::parse("https://api.contoso.com").expect("url")],
                public_key: Some(
                    RsaPublicKey::parse(include_str!("../domain/testdata/rsa2048.spki.pem"))
                        .expect("key"),
                ),
            }),
            scope: Some(Scope::Global),
            contact_info: Some(ContactInfo {
                name: text("Dana"),
                email: EmailAddress::parse("dana@contoso.com").expect("email"),
                phone: Some(PhoneNumber::parse("+1 425 555 0100").expect("phone")),
            }),
            publisher_info: Some(PublisherInfo {
                publisher_name: text("Contoso"),
                website_url: HttpsUrl::parse("https://www.contoso.com").expect("url"),
                support_url: HttpsUrl::parse("https://support.contoso.com").expect("url"),
                description: text("Expenses"),
            }),
            scenario_details: Some(ScenarioDetails {
                description: text("Approvals"),
                action_usage: text("Approve"),
                expected_daily_volume: 10,
                mail_type: MailType::Transactional,
                sending_history_weeks: 4,
            }),
            verification_details: Some(VerificationDetails {
                reviewer_instructions: text("Steps"),
                sample_email: Some("From: a@contoso.com\r\n\r\nx".to_owned()),
            }),
        }
    }
}
