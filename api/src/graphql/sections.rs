//! The dashboard sections as GraphQL objects, and the criteria report of a sample e-mail.
//!
//! Sections are read straight from the stored JSON document of a draft or a frozen submission,
//! field by field as the query asks for them. Every value in that document went through its
//! domain type's parser when it was saved (see [`crate::registration::draft`]), and a stored
//! value is shown as it was saved: a queue page does not parse the addresses and URLs of every
//! item again, nor copy a 2 MiB sample e-mail it was not asked for. Only the fields computed
//! from a value (`domains`, `publicKeyBits`) parse it, when asked. A document that does not
//! have the shape the sections are saved in makes the field that reads it an internal error,
//! with the cause in the log.

use async_graphql::{Enum, Object, SimpleObject};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{
    criteria::{CriteriaReport, Criterion, CriterionCheck, Verdict},
    domain::{DomainName, RsaPublicKey, SenderAddress, TargetUrl},
    error::{ApiError, ApiResult},
    registration::{MailType, Scope},
};

/// A stored draft or frozen submission, as the GraphQL `ProviderDraft`.
#[derive(Clone, Copy)]
pub struct StoredDraft<'a>(&'a Map<String, Value>);

impl<'a> StoredDraft<'a> {
    /// The view of a stored document; `Err` when it is not a JSON object.
    pub fn of(document: &'a Value) -> ApiResult<Self> {
        document
            .as_object()
            .map(Self)
            .ok_or_else(|| malformed("the document", "an object"))
    }

    /// A section, `None` until saved.
    fn section(&self, name: &'static str) -> ApiResult<Option<Section<'a>>> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(fields)) => Ok(Some(Section { name, fields })),
            Some(_) => Err(malformed(name, "an object")),
        }
    }
}

/// One saved section of a stored document, and its name there for the log.
#[derive(Clone, Copy)]
struct Section<'a> {
    name: &'static str,
    fields: &'a Map<String, Value>,
}

impl<'a> Section<'a> {
    fn optional_text(&self, field: &'static str) -> ApiResult<Option<&'a str>> {
        match self.fields.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(self.malformed(field, "a string")),
        }
    }

    fn text(&self, field: &'static str) -> ApiResult<&'a str> {
        self.optional_text(field)?
            .ok_or_else(|| self.malformed(field, "a string"))
    }

    fn texts(&self, field: &'static str) -> ApiResult<Vec<&'a str>> {
        self.fields
            .get(field)
            .and_then(Value::as_array)
            .ok_or_else(|| self.malformed(field, "a list"))?
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| self.malformed(field, "strings"))
            })
            .collect()
    }

    fn count(&self, field: &'static str) -> ApiResult<u64> {
        self.fields
            .get(field)
            .and_then(Value::as_u64)
            .ok_or_else(|| self.malformed(field, "a whole number"))
    }

    fn malformed(&self, field: &str, expected: &str) -> ApiError {
        malformed(&format!("{}.{field}", self.name), expected)
    }

    /// A stored value that no longer parses (an internal error: it parsed when it was saved).
    fn unparsable(&self, field: &str, error: impl std::fmt::Debug) -> ApiError {
        ApiError::internal(anyhow::anyhow!(
            "stored provider sections: `{}.{field}` does not parse: {error:?}",
            self.name
        ))
    }
}

fn malformed(path: &str, expected: &str) -> ApiError {
    ApiError::internal(anyhow::anyhow!(
        "stored provider sections: `{path}` is not {expected}"
    ))
}

/// The sections of a draft or of a frozen submission; a section is null until saved.
#[Object(name = "ProviderDraft")]
impl<'a> StoredDraft<'a> {
    async fn provider_details(&self) -> ApiResult<Option<StoredProviderDetails<'a>>> {
        Ok(self.section("providerDetails")?.map(StoredProviderDetails))
    }
    async fn scope(&self) -> ApiResult<Option<Scope>> {
        match self.0.get("scope") {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_str()
                .and_then(Scope::parse)
                .map(Some)
                .ok_or_else(|| malformed("scope", "a scope")),
        }
    }
    async fn contact_info(&self) -> ApiResult<Option<StoredContactInfo<'a>>> {
        Ok(self.section("contactInfo")?.map(StoredContactInfo))
    }
    /// Global scope only.
    async fn publisher_info(&self) -> ApiResult<Option<StoredPublisherInfo<'a>>> {
        Ok(self.section("publisherInfo")?.map(StoredPublisherInfo))
    }
    /// Global scope only.
    async fn scenario_details(&self) -> ApiResult<Option<StoredScenarioDetails<'a>>> {
        Ok(self.section("scenarioDetails")?.map(StoredScenarioDetails))
    }
    /// Global scope only.
    async fn verification_details(&self) -> ApiResult<Option<StoredVerificationDetails<'a>>> {
        Ok(self
            .section("verificationDetails")?
            .map(StoredVerificationDetails))
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

pub struct StoredProviderDetails<'a>(Section<'a>);

/// "Details of your provider".
#[Object(name = "ProviderDetails")]
impl<'a> StoredProviderDetails<'a> {
    /// Static sender addresses, normalised (domain in lower-case A-labels).
    async fn sender_emails(&self) -> ApiResult<Vec<&'a str>> {
        self.0.texts("senderEmails")
    }
    /// https target URLs, normalised; each covers its host and that host's subdomains.
    async fn target_urls(&self) -> ApiResult<Vec<&'a str>> {
        self.0.texts("targetUrls")
    }
    /// PEM of the RSA key that signs cards, if any.
    async fn public_key(&self) -> ApiResult<Option<&'a str>> {
        self.0.optional_text("publicKey")
    }
    async fn public_key_bits(&self) -> ApiResult<Option<i32>> {
        let Some(pem) = self.0.optional_text("publicKey")? else {
            return Ok(None);
        };
        let key =
            RsaPublicKey::parse(pem).map_err(|error| self.0.unparsable("publicKey", error))?;
        Ok(Some(i32::try_from(key.bits()).unwrap_or(i32::MAX)))
    }
    /// Sender and target domains side by side with their registrable domains.
    async fn domains(&self) -> ApiResult<Vec<RegisteredDomain>> {
        let mut domains = Vec::new();
        for value in self.0.texts("senderEmails")? {
            let sender = SenderAddress::parse(value)
                .map_err(|error| self.0.unparsable("senderEmails", error))?;
            domains.push(registered(DomainRole::Sender, value, sender.domain()));
        }
        for value in self.0.texts("targetUrls")? {
            let target =
                TargetUrl::parse(value).map_err(|error| self.0.unparsable("targetUrls", error))?;
            domains.push(registered(DomainRole::Target, value, target.host()));
        }
        Ok(domains)
    }
}

fn registered(role: DomainRole, value: &str, domain: &DomainName) -> RegisteredDomain {
    RegisteredDomain {
        role,
        value: value.to_owned(),
        domain: domain.as_str().to_owned(),
        domain_unicode: domain.to_unicode(),
        registrable_domain: domain.registrable().map(|r| r.as_str().to_owned()),
    }
}

pub struct StoredContactInfo<'a>(Section<'a>);

/// "Contact info": decisions are e-mailed to this address.
#[Object(name = "ContactInfo")]
impl<'a> StoredContactInfo<'a> {
    async fn name(&self) -> ApiResult<&'a str> {
        self.0.text("name")
    }
    async fn email(&self) -> ApiResult<&'a str> {
        self.0.text("email")
    }
    /// E.164.
    async fn phone(&self) -> ApiResult<Option<&'a str>> {
        self.0.optional_text("phone")
    }
}

pub struct StoredPublisherInfo<'a>(Section<'a>);

/// "Publisher information".
#[Object(name = "PublisherInfo")]
impl<'a> StoredPublisherInfo<'a> {
    async fn publisher_name(&self) -> ApiResult<&'a str> {
        self.0.text("publisherName")
    }
    async fn website_url(&self) -> ApiResult<&'a str> {
        self.0.text("websiteUrl")
    }
    async fn support_url(&self) -> ApiResult<&'a str> {
        self.0.text("supportUrl")
    }
    async fn description(&self) -> ApiResult<&'a str> {
        self.0.text("description")
    }
}

pub struct StoredScenarioDetails<'a>(Section<'a>);

/// "Scenario details".
#[Object(name = "ScenarioDetails")]
impl<'a> StoredScenarioDetails<'a> {
    /// The scenario in which recipients get actionable messages.
    async fn description(&self) -> ApiResult<&'a str> {
        self.0.text("description")
    }
    /// How recipients use the actions.
    async fn action_usage(&self) -> ApiResult<&'a str> {
        self.0.text("actionUsage")
    }
    async fn expected_daily_volume(&self) -> ApiResult<i64> {
        let volume = self.0.count("expectedDailyVolume")?;
        Ok(i64::try_from(volume).unwrap_or(i64::MAX))
    }
    async fn mail_type(&self) -> ApiResult<MailType> {
        let value = self
            .0
            .fields
            .get("mailType")
            .ok_or_else(|| self.0.malformed("mailType", "a mail type"))?;
        MailType::deserialize(value).map_err(|_| self.0.malformed("mailType", "a mail type"))
    }
    /// Weeks of sending history from the domain.
    async fn sending_history_weeks(&self) -> ApiResult<i32> {
        let weeks = self.0.count("sendingHistoryWeeks")?;
        Ok(i32::try_from(weeks).unwrap_or(i32::MAX))
    }
}

pub struct StoredVerificationDetails<'a>(Section<'a>);

/// "Verification details".
#[Object(name = "VerificationDetails")]
impl<'a> StoredVerificationDetails<'a> {
    /// How a reviewer can try the actions (test account, steps).
    async fn reviewer_instructions(&self) -> ApiResult<&'a str> {
        self.0.text("reviewerInstructions")
    }
    /// The raw sample e-mail as uploaded (up to 2 MiB: it costs 200 toward the query
    /// complexity limit, so one query cannot ask for many).
    #[graphql(complexity = 200)]
    async fn sample_email(&self) -> ApiResult<Option<&'a str>> {
        self.0.optional_text("sampleEmail")
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

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, Schema};
    use serde_json::json;

    use super::*;
    use crate::registration::{ProviderDraft, draft::fixture::full_draft};

    /// A schema whose one field reads `document` as the API reads a stored draft.
    struct Stored(Value);

    #[Object]
    impl Stored {
        async fn draft(&self) -> ApiResult<StoredDraft<'_>> {
            StoredDraft::of(&self.0)
        }
    }

    const EVERY_FIELD: &str = "{ draft { scope \
        providerDetails { senderEmails targetUrls publicKey publicKeyBits \
            domains { role value domain domainUnicode registrableDomain } } \
        contactInfo { name email phone } \
        publisherInfo { publisherName websiteUrl supportUrl description } \
        scenarioDetails { description actionUsage expectedDailyVolume mailType \
            sendingHistoryWeeks } \
        verificationDetails { reviewerInstructions sampleEmail } } }";

    /// The data of the answer, and the paths of its errors.
    async fn read(document: Value, query: &str) -> (Value, Vec<String>) {
        let schema = Schema::new(Stored(document), EmptyMutation, EmptySubscription);
        let response = schema.execute(query).await;
        let mut failed: Vec<String> = response
            .errors
            .iter()
            .map(|error| {
                assert_eq!(error.message, "internal server error", "{error:?}");
                let path: Vec<String> = error
                    .path
                    .iter()
                    .map(|segment| match segment {
                        async_graphql::PathSegment::Field(name) => name.clone(),
                        async_graphql::PathSegment::Index(index) => index.to_string(),
                    })
                    .collect();
                path.join(".")
            })
            .collect();
        failed.sort();
        (response.data.into_json().expect("JSON data"), failed)
    }

    #[tokio::test]
    async fn a_saved_draft_reads_back_as_the_domain_values_it_was_saved_from() {
        let saved = full_draft();
        let (data, failed) = read(saved.to_json(), EVERY_FIELD).await;
        assert!(failed.is_empty(), "{failed:?}");

        let details = saved.provider_details.as_ref().expect("details");
        let contact = saved.contact_info.as_ref().expect("contact");
        let publisher = saved.publisher_info.as_ref().expect("publisher");
        let scenario = saved.scenario_details.as_ref().expect("scenario");
        let verification = saved.verification_details.as_ref().expect("verification");
        let sender = &details.sender_emails[0];
        let target = &details.target_urls[0];
        let expected = json!({ "draft": {
            "scope": "GLOBAL",
            "providerDetails": {
                "senderEmails": [sender.as_str()],
                "targetUrls": [target.as_str()],
                "publicKey": details.public_key.as_ref().map(|k| k.as_str()),
                "publicKeyBits": 2048,
                "domains": [
                    { "role": "SENDER", "value": sender.as_str(), "domain": "contoso.com",
                      "domainUnicode": "contoso.com", "registrableDomain": "contoso.com" },
                    { "role": "TARGET", "value": target.as_str(), "domain": "api.contoso.com",
                      "domainUnicode": "api.contoso.com", "registrableDomain": "contoso.com" },
                ],
            },
            "contactInfo": {
                "name": contact.name.as_str(),
                "email": contact.email.as_str(),
                "phone": contact.phone.as_ref().map(|p| p.as_str()),
            },
            "publisherInfo": {
                "publisherName": publisher.publisher_name.as_str(),
                "websiteUrl": publisher.website_url.as_str(),
                "supportUrl": publisher.support_url.as_str(),
                "description": publisher.description.as_str(),
            },
            "scenarioDetails": {
                "description": scenario.description.as_str(),
                "actionUsage": scenario.action_usage.as_str(),
                "expectedDailyVolume": scenario.expected_daily_volume,
                "mailType": "TRANSACTIONAL",
                "sendingHistoryWeeks": scenario.sending_history_weeks,
            },
            "verificationDetails": {
                "reviewerInstructions": verification.reviewer_instructions.as_str(),
                "sampleEmail": verification.sample_email,
            },
        }});
        assert_eq!(data, expected);
    }

    #[tokio::test]
    async fn sections_not_saved_yet_are_null() {
        for document in [json!({}), ProviderDraft::default().to_json()] {
            let (data, failed) = read(document, EVERY_FIELD).await;
            assert!(failed.is_empty(), "{failed:?}");
            assert_eq!(
                data,
                json!({ "draft": {
                    "scope": null, "providerDetails": null, "contactInfo": null,
                    "publisherInfo": null, "scenarioDetails": null, "verificationDetails": null,
                }})
            );
        }
    }

    #[tokio::test]
    async fn a_document_that_is_not_an_object_is_an_internal_error() {
        for document in [json!("not a draft"), Value::Null, json!([])] {
            let (data, failed) = read(document, "{ draft { scope } }").await;
            assert_eq!(failed, ["draft"]);
            assert_eq!(data, Value::Null);
        }
    }

    #[tokio::test]
    async fn a_malformed_document_fails_only_the_fields_that_read_a_bad_value() {
        let document = json!({
            "providerDetails": {
                "senderEmails": ["a@contoso.com", 7],
                "targetUrls": "https://api.contoso.com",
                "publicKey": "not a PEM",
            },
            "scope": "EVERYWHERE",
            "contactInfo": { "name": "Dana", "phone": 5550100 },
            "publisherInfo": [],
            "scenarioDetails": {
                "description": "Approvals",
                "expectedDailyVolume": -1,
                "mailType": "BULK",
                "sendingHistoryWeeks": 1.5,
            },
            "verificationDetails": { "reviewerInstructions": "Steps", "sampleEmail": null },
        });
        let query = "{ draft { \
            providerDetails { senderEmails } providerDetails { targetUrls } \
            providerDetails { publicKey } providerDetails { publicKeyBits } \
            providerDetails { domains { value } } } }";
        let (_, failed) = read(document.clone(), query).await;
        // Non-null fields make their parent null, so each is read in a selection of its own.
        assert_eq!(
            failed,
            [
                "draft.providerDetails.domains",
                "draft.providerDetails.publicKeyBits",
                "draft.providerDetails.senderEmails",
                "draft.providerDetails.targetUrls",
            ]
        );

        for (query, path) in [
            ("{ draft { scope } }", "draft.scope"),
            (
                "{ draft { contactInfo { email } } }",
                "draft.contactInfo.email",
            ),
            (
                "{ draft { contactInfo { phone } } }",
                "draft.contactInfo.phone",
            ),
            (
                "{ draft { publisherInfo { description } } }",
                "draft.publisherInfo",
            ),
            (
                "{ draft { scenarioDetails { actionUsage } } }",
                "draft.scenarioDetails.actionUsage",
            ),
            (
                "{ draft { scenarioDetails { expectedDailyVolume } } }",
                "draft.scenarioDetails.expectedDailyVolume",
            ),
            (
                "{ draft { scenarioDetails { mailType } } }",
                "draft.scenarioDetails.mailType",
            ),
            (
                "{ draft { scenarioDetails { sendingHistoryWeeks } } }",
                "draft.scenarioDetails.sendingHistoryWeeks",
            ),
        ] {
            let (_, failed) = read(document.clone(), query).await;
            assert_eq!(failed, [path], "{query}");
        }

        let query = "{ draft { contactInfo { name } \
            scenarioDetails { description } \
            verificationDetails { reviewerInstructions sampleEmail } \
            providerDetails { publicKey } } }";
        let (data, failed) = read(document, query).await;
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(
            data,
            json!({ "draft": {
                "contactInfo": { "name": "Dana" },
                "scenarioDetails": { "description": "Approvals" },
                "verificationDetails": { "reviewerInstructions": "Steps", "sampleEmail": null },
                "providerDetails": { "publicKey": "not a PEM" },
            }})
        );
    }

    #[tokio::test]
    async fn a_stored_address_that_no_longer_parses_fails_its_domains_not_its_text() {
        let document = json!({
            "providerDetails": {
                "senderEmails": ["not an address"],
                "targetUrls": ["http://plain.example"],
            },
        });
        let query = "{ draft { providerDetails { senderEmails targetUrls publicKeyBits } } }";
        let (data, failed) = read(document.clone(), query).await;
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(
            data["draft"]["providerDetails"],
            json!({ "senderEmails": ["not an address"], "targetUrls": ["http://plain.example"],
                    "publicKeyBits": null })
        );
        let query = "{ draft { providerDetails { domains { value } } } }";
        let (_, failed) = read(document, query).await;
        assert_eq!(failed, ["draft.providerDetails.domains"]);
    }
}
