//! The dashboard sections as GraphQL objects, and the criteria report of a sample e-mail.

use async_graphql::{Enum, Object, SimpleObject};

use crate::{
    criteria::{CriteriaReport, Criterion, CriterionCheck, Verdict},
    registration::{
        MailType, ProviderDraft, Scope,
        draft::{
            ContactInfo, ProviderDetails, PublisherInfo, ScenarioDetails, VerificationDetails,
        },
    },
};

/// The sections of a draft or of a frozen submission; a section is null until saved.
#[Object]
impl ProviderDraft {
    async fn provider_details(&self) -> Option<&ProviderDetails> {
        self.provider_details.as_ref()
    }
    async fn scope(&self) -> Option<Scope> {
        self.scope
    }
    async fn contact_info(&self) -> Option<&ContactInfo> {
        self.contact_info.as_ref()
    }
    /// Global scope only.
    async fn publisher_info(&self) -> Option<&PublisherInfo> {
        self.publisher_info.as_ref()
    }
    /// Global scope only.
    async fn scenario_details(&self) -> Option<&ScenarioDetails> {
        self.scenario_details.as_ref()
    }
    /// Global scope only.
    async fn verification_details(&self) -> Option<&VerificationDetails> {
        self.verification_details.as_ref()
    }
}

/// Whether a domain belongs to a sender address or a target URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum DomainRole {
    Sender,
    Target,
}

/// A sender or target domain beside its registrable domain (eTLD+1), so a reviewer can see at a
/// glance which organisations a registration spans.
#[derive(SimpleObject)]
pub struct RegisteredDomain {
    pub role: DomainRole,
    /// The address or URL as registered (normalised).
    pub value: String,
    /// Its host, in lower-case A-labels.
    pub domain: String,
    /// Unicode form of the host, for display.
    pub domain_unicode: String,
    /// The registrable domain under the Public Suffix List.
    pub registrable_domain: Option<String>,
}

/// "Details of your provider".
#[Object]
impl ProviderDetails {
    /// Static sender addresses, normalised (domain in lower-case A-labels).
    async fn sender_emails(&self) -> Vec<&str> {
        self.sender_emails.iter().map(|s| s.as_str()).collect()
    }
    /// https target URLs, normalised; each covers its host and that host's subdomains.
    async fn target_urls(&self) -> Vec<&str> {
        self.target_urls.iter().map(|t| t.as_str()).collect()
    }
    /// PEM of the RSA key that signs cards, if any.
    async fn public_key(&self) -> Option<&str> {
        self.public_key.as_ref().map(|k| k.as_str())
    }
    async fn public_key_bits(&self) -> Option<i32> {
        self.public_key
            .as_ref()
            .map(|k| i32::try_from(k.bits()).unwrap_or(i32::MAX))
    }
    /// Sender and target domains side by side with their registrable domains.
    async fn domains(&self) -> Vec<RegisteredDomain> {
        let senders = self
            .sender_emails
            .iter()
            .map(|s| (DomainRole::Sender, s.as_str(), s.domain()));
        let targets = self
            .target_urls
            .iter()
            .map(|t| (DomainRole::Target, t.as_str(), t.host()));
        senders
            .chain(targets)
            .map(|(role, value, domain)| RegisteredDomain {
                role,
                value: value.to_owned(),
                domain: domain.as_str().to_owned(),
                domain_unicode: domain.to_unicode(),
                registrable_domain: domain.registrable().map(|r| r.as_str().to_owned()),
            })
            .collect()
    }
}

/// "Contact info": decisions are e-mailed to this address.
#[Object]
impl ContactInfo {
    async fn name(&self) -> &str {
        self.name.as_str()
    }
    async fn email(&self) -> &str {
        self.email.as_str()
    }
    /// E.164.
    async fn phone(&self) -> Option<&str> {
        self.phone.as_ref().map(|p| p.as_str())
    }
}

/// "Publisher information".
#[Object]
impl PublisherInfo {
    async fn publisher_name(&self) -> &str {
        self.publisher_name.as_str()
    }
    async fn website_url(&self) -> &str {
        self.website_url.as_str()
    }
    async fn support_url(&self) -> &str {
        self.support_url.as_str()
    }
    async fn description(&self) -> &str {
        self.description.as_str()
    }
}

/// "Scenario details".
#[Object]
impl ScenarioDetails {
    /// The scenario in which recipients get actionable messages.
    async fn description(&self) -> &str {
        self.description.as_str()
    }
    /// How recipients use the actions.
    async fn action_usage(&self) -> &str {
        self.action_usage.as_str()
    }
    async fn expected_daily_volume(&self) -> i64 {
        i64::from(self.expected_daily_volume)
    }
    async fn mail_type(&self) -> MailType {
        self.mail_type
    }
    /// Weeks of sending history from the domain.
    async fn sending_history_weeks(&self) -> i32 {
        i32::try_from(self.sending_history_weeks).unwrap_or(i32::MAX)
    }
}

/// "Verification details".
#[Object]
impl VerificationDetails {
    /// How a reviewer can try the actions (test account, steps).
    async fn reviewer_instructions(&self) -> &str {
        self.reviewer_instructions.as_str()
    }
    /// The raw sample e-mail as uploaded (up to 2 MiB: it costs 200 toward the query
    /// complexity limit, so one query cannot ask for many).
    #[graphql(complexity = 200)]
    async fn sample_email(&self) -> Option<&str> {
        self.sample_email.as_deref()
    }
}

/// The sample e-mail checked against the registration criteria.
#[Object]
impl CriteriaReport {
    /// FAIL if any check fails, else WARN if any warns, else PASS; MANUAL checks are left to the
    /// reviewer.
    async fn overall(&self) -> Verdict {
        self.overall
    }
    async fn checks(&self) -> &[CriterionCheck] {
        &self.checks
    }
    /// Everything established about the sample (DKIM signatures, SPF, domains, card actions),
    /// as JSON. Costs 50 toward the query complexity limit.
    #[graphql(complexity = 50)]
    async fn facts(&self) -> async_graphql::Json<serde_json::Value> {
        async_graphql::Json(serde_json::to_value(&self.facts).unwrap_or_default())
    }
}

/// One criterion, its verdict and the evidence behind it.
#[Object]
impl CriterionCheck {
    async fn criterion(&self) -> Criterion {
        self.criterion
    }
    async fn verdict(&self) -> Verdict {
        self.verdict
    }
    /// Sentences pointing at what to fix: the header, the domain pair, the URL.
    async fn evidence(&self) -> &[String] {
        &self.evidence
    }
}
