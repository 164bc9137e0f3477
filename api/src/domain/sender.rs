//! `SenderAddress`: an [`EmailAddress`] that is a fixed sender, not a per-recipient or
//! per-message bounce address, and the parser for the list of a service's senders.

use std::fmt;

use super::{EmailAddress, FieldError, ListErrors, ListRules, ValidationCode, parse_list, quote};

/// Most sender addresses one service may register.
pub const MAX_SENDERS: usize = 20;

/// A registered sender address: the fixed `From` address a service sends actionable email
/// from. On top of [`EmailAddress`], it refuses local parts that vary per recipient or per
/// message (`SENDER_NOT_STATIC`), because registering one would either never match again or
/// match far more than intended:
///
/// - SRS forwarding addresses (`SRS0=…`, `SRS1=…`);
/// - BATV signed return paths (`prvs=…`, `msprvs1=…`, `btv1==…`);
/// - VERP, a local part that embeds another address with `=` (`bounces-123-abc=example.org`);
/// - a `+tag` containing a token of 8 or more letters and digits with at least one digit
///   (`bounce+4f3a9c1d2e`), which is what per-recipient tags look like;
/// - `bounce`/`bounces` followed by something with digits (`bounces-123-abc`).
///
/// A descriptive tag stays allowed: `myservice+alerts@contoso.com`.
///
/// Equality and hashing are those of [`EmailAddress`] (case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SenderAddress(EmailAddress);

impl SenderAddress {
    /// Parses an address and checks that it is a static sender.
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        Self::from_email(EmailAddress::parse(input)?)
    }

    /// Checks that an already parsed address is a static sender.
    pub fn from_email(email: EmailAddress) -> Result<Self, FieldError> {
        match dynamic_pattern(email.local_part()) {
            None => Ok(Self(email)),
            Some(kind) => Err(FieldError::new(
                ValidationCode::SenderNotStatic,
                format!(
                    "The sender {} looks like {kind}, which changes per recipient or per \
                     message; register the fixed address your service sends from.",
                    quote(email.as_str())
                ),
            )),
        }
    }

    /// The address as stored (see [`EmailAddress::as_str`]).
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The comparison key (see [`EmailAddress::normalized`]).
    pub fn normalized(&self) -> &str {
        self.0.normalized()
    }

    /// The sender's domain.
    pub fn domain(&self) -> &super::DomainName {
        self.0.domain()
    }

    /// The underlying address.
    pub fn as_email(&self) -> &EmailAddress {
        &self.0
    }

    /// Unwraps into the underlying address.
    pub fn into_email(self) -> EmailAddress {
        self.0
    }
}

/// Rules for a service's sender list.
const SENDER_LIST_RULES: ListRules = ListRules {
    min: 1,
    max: MAX_SENDERS,
    singular: "sender address",
    plural: "sender addresses",
    comparison: "Addresses are compared ignoring letter case, with internationalised domains \
                 in their punycode form.",
};

/// Parses a service's sender addresses: 1..=20 entries, each a [`SenderAddress`], no two
/// equal after normalisation (`A@Contoso.COM` repeats `a@contoso.com`; `x@bücher.de`
/// repeats `x@xn--bcher-kva.de`). Every problem is reported: a count problem with index
/// `None`, an invalid entry or a duplicate (at the later index) with `Some(index)`.
pub fn parse_sender_list(inputs: &[String]) -> Result<Vec<SenderAddress>, ListErrors> {
    parse_list(inputs, &SENDER_LIST_RULES, SenderAddress::parse, |sender| {
        sender.normalized().to_owned()
    })
}

/// Describes the per-recipient pattern `local` follows, if any.
fn dynamic_pattern(local: &str) -> Option<&'static str> {
    let local = local.to_ascii_lowercase();
    if local.starts_with("srs0=") || local.starts_with("srs1=") {
        return Some("an SRS forwarding address");
    }
    if ["prvs=", "msprvs1=", "btv1="]
        .iter()
        .any(|prefix| local.starts_with(prefix))
    {
        return Some("a BATV signed bounce address");
    }
    if let Some((_, after)) = local.rsplit_once('=')
        && looks_like_domain(after)
    {
        return Some("a VERP address that embeds the recipient's address");
    }
    if let Some((_, tag)) = local.split_once('+')
        && tag.split(['+', '-', '_', '.', '=']).any(is_token)
    {
        return Some("a per-recipient +tag");
    }
    let mut segments = local.split(['+', '-', '_', '.', '=']);
    if segments
        .next()
        .is_some_and(|first| first == "bounce" || first == "bounces")
        && segments.any(|segment| segment.bytes().any(|b| b.is_ascii_digit()))
    {
        return Some("a per-message bounce address");
    }
    None
}

/// A generated token: 8 or more ASCII letters and digits, at least one of them a digit.
fn is_token(segment: &str) -> bool {
    segment.len() >= 8
        && segment.bytes().all(|b| b.is_ascii_alphanumeric())
        && segment.bytes().any(|b| b.is_ascii_digit())
}

/// `example.org`-like: two or more non-empty labels of letters, digits and hyphens, ending in
/// a label with a letter.
fn looks_like_domain(text: &str) -> bool {
    let labels: Vec<&str> = text.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.bytes().any(|b| b.is_ascii_alphabetic()))
}

impl fmt::Display for SenderAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

string_serde!(SenderAddress);

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn static_senders_are_accepted() {
        for input in [
            "alerts@contoso.com",
            "myservice+alerts@contoso.com",
            "myservice+weekly-digest@contoso.com",
            "news+2024@contoso.com",
            "no-reply@contoso.com",
            "noreply-2fa@contoso.com",
            "john.smith1987@contoso.com",
            "team2025summit@contoso.com",
            "user=name@contoso.com",
            "bounces@contoso.com",
            "bounce-notifications@contoso.com",
            "srs@contoso.com",
            "prvs@contoso.com",
        ] {
            assert!(
                SenderAddress::parse(input).is_ok(),
                "{input} should be allowed"
            );
        }
    }

    #[test]
    fn per_recipient_and_bounce_patterns_are_not_static() {
        for input in [
            "bounce+4f3a9c1d2e@contoso.com",
            "bounce+4F3A9C1D2E@contoso.com",
            "alerts+a1b2c3d4@contoso.com",
            "alerts+user-7f3e9a01bc@contoso.com",
            "bounces-123-abc=example.org@contoso.com",
            "list-bounces+someone=example.co.uk@contoso.com",
            "SRS0=HHH=TT=example.org=alice@contoso.com",
            "srs1=XXX=example.net==HHH=TT=example.org=alice@contoso.com",
            "prvs=1234567890=alice@contoso.com",
            "msprvs1=17999abcdefgh=bounces-1234@contoso.com",
            "btv1==1234567890==alice@contoso.com",
            "bounces-123-abc@contoso.com",
            "bounce.20240101@contoso.com",
        ] {
            let error = SenderAddress::parse(input).expect_err(input);
            assert_eq!(error.code, ValidationCode::SenderNotStatic, "{input}");
        }
    }

    #[test]
    fn invalid_emails_keep_their_email_codes() {
        let error = SenderAddress::parse("a@co.uk").expect_err("public suffix");
        assert_eq!(error.code, ValidationCode::EmailDomainPublicSuffix);
    }

    #[test]
    fn a_valid_list_is_parsed_in_order() {
        let senders =
            parse_sender_list(&strings(&["b@contoso.com", "A@Contoso.com"])).expect("valid list");
        let shown: Vec<&str> = senders.iter().map(SenderAddress::as_str).collect();
        assert_eq!(shown, vec!["b@contoso.com", "A@contoso.com"]);
    }

    #[test]
    fn uppercase_duplicate_senders_are_detected() {
        let errors = parse_sender_list(&strings(&["a@contoso.com", "A@Contoso.COM"]))
            .expect_err("duplicate");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, Some(1));
        assert_eq!(errors[0].1.code, ValidationCode::Duplicate);
    }

    #[test]
    fn unicode_and_punycode_duplicate_senders_are_detected() {
        let errors = parse_sender_list(&strings(&[
            "x@xn--bcher-kva.de",
            "x@bücher.de",
            "X@BÜCHER.de",
        ]))
        .expect_err("duplicates");
        let found: Vec<(Option<usize>, ValidationCode)> = errors
            .iter()
            .map(|(index, error)| (*index, error.code))
            .collect();
        assert_eq!(
            found,
            vec![
                (Some(1), ValidationCode::Duplicate),
                (Some(2), ValidationCode::Duplicate)
            ]
        );
    }

    #[test]
    fn zero_senders_are_too_few() {
        let errors = parse_sender_list(&[]).expect_err("empty");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, None);
        assert_eq!(errors[0].1.code, ValidationCode::TooFew);
    }

    #[test]
    fn twenty_senders_are_allowed_and_twenty_one_are_too_many() {
        let twenty: Vec<String> = (0..20).map(|i| format!("s{i}@contoso.com")).collect();
        assert_eq!(parse_sender_list(&twenty).expect("20 senders").len(), 20);
        let mut twenty_one = twenty;
        twenty_one.push("s20@contoso.com".to_owned());
        let errors = parse_sender_list(&twenty_one).expect_err("21 senders");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, None);
        assert_eq!(errors[0].1.code, ValidationCode::TooMany);
    }

    #[test]
    fn every_error_in_a_sender_list_is_reported() {
        let errors = parse_sender_list(&strings(&[
            "ok@contoso.com",
            "",
            "a@contoso.com.",
            "bounce+4f3a9c1d2e@contoso.com",
            "OK@contoso.com",
            "a@[192.0.2.1]",
            "a@b.com\r\nBcc: x@y.com",
        ]))
        .expect_err("invalid list");
        let found: Vec<(Option<usize>, ValidationCode)> = errors
            .iter()
            .map(|(index, error)| (*index, error.code))
            .collect();
        assert_eq!(
            found,
            vec![
                (Some(1), ValidationCode::Required),
                (Some(2), ValidationCode::EmailDomainTrailingDot),
                (Some(3), ValidationCode::SenderNotStatic),
                (Some(4), ValidationCode::Duplicate),
                (Some(5), ValidationCode::EmailDomainIpLiteral),
                (Some(6), ValidationCode::ControlCharacter),
            ]
        );
    }

    #[test]
    fn too_many_senders_still_reports_the_invalid_entries() {
        let mut inputs: Vec<String> = (0..21).map(|i| format!("s{i}@contoso.com")).collect();
        inputs[3] = "not an address".to_owned();
        let errors = parse_sender_list(&inputs).expect_err("invalid");
        let found: Vec<(Option<usize>, ValidationCode)> = errors
            .iter()
            .map(|(index, error)| (*index, error.code))
            .collect();
        assert_eq!(
            found,
            vec![
                (None, ValidationCode::TooMany),
                (Some(3), ValidationCode::EmailInvalid)
            ]
        );
    }

    #[test]
    fn serde_round_trips_and_rejects_dynamic_stored_values() {
        let sender = SenderAddress::parse("Alerts@Contoso.com").expect("valid");
        let json = serde_json::to_string(&sender).expect("serialises");
        assert_eq!(json, "\"Alerts@contoso.com\"");
        let back: SenderAddress = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, sender);
        assert!(
            serde_json::from_str::<SenderAddress>("\"bounce+4f3a9c1d2e@contoso.com\"").is_err()
        );
    }
}
