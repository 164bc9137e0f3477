//! Validated domain values for registration input, each built only by parsing, plus the shared
//! per-value error type ([`FieldError`]) with its stable machine-readable [`ValidationCode`].
//!
//! Every type here has a private field and a `parse` constructor, so holding a value proves it
//! passed validation. Serialisation writes the normalised string and deserialisation parses it
//! again, so stored JSON can never smuggle in an invalid value. Errors are per value: the caller
//! adds the field path (e.g. `["senderEmails", 2]`); list parsers report `(index, error)` pairs
//! with `None` for an error about the list as a whole.
//!
//! Two rules hold for every parser: an empty input is [`ValidationCode::Required`], and a control
//! character (C0, DEL, C1) or a Unicode bidi override anywhere in the input is
//! [`ValidationCode::ControlCharacter`] (multi-line text alone may keep `\n` and `\t`).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::Hash;

use serde::{Serialize, Serializer};

/// Implements `Serialize` (as `as_str()`) and `Deserialize` (through `parse`, so an invalid stored
/// value fails to load) for a type with `fn parse(&str) -> Result<Self, FieldError>`.
macro_rules! string_serde {
    ($ty:ty) => {
        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                let text = <String as ::serde::Deserialize>::deserialize(deserializer)?;
                <$ty>::parse(&text).map_err(<D::Error as ::serde::de::Error>::custom)
            }
        }
    };
}

mod domain_name;
mod email;
mod https_url;
mod number;
mod phone;
mod public_key;
mod sender;
mod target_url;
mod text;

pub use domain_name::{
    DomainName, SPECIAL_USE_TLDS, confusable_label, looks_like_ip_address, special_use_tld,
};
pub use email::EmailAddress;
pub use https_url::HttpsUrl;
pub(crate) use https_url::{host_reads_the_same, naive_host};
pub use number::check_range;
pub use phone::PhoneNumber;
pub use public_key::RsaPublicKey;
pub use sender::{MAX_SENDERS, SenderAddress, parse_sender_list};
pub use target_url::{MAX_TARGET_URLS, TargetUrl, parse_target_url_list};
pub use text::BoundedText;

/// Errors of a list field: `(Some(index), error)` for one entry, `(None, error)` for the list.
pub type ListErrors = Vec<(Option<usize>, FieldError)>;

macro_rules! validation_codes {
    ($( $(#[$doc:meta])* $variant:ident => $code:literal, )*) => {
        /// Stable, machine-readable reason a value was rejected; clients switch on
        /// [`ValidationCode::as_str`]. Codes are never renamed once published.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ValidationCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ValidationCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ValidationCode] = &[$(ValidationCode::$variant),*];

            /// The `SCREAMING_SNAKE_CASE` code sent to clients.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ValidationCode::$variant => $code,)*
                }
            }
        }
    };
}

validation_codes! {
    /// The value is empty (or only whitespace).
    Required => "REQUIRED",
    /// The value is longer than the field allows.
    TooLong => "TOO_LONG",
    /// The value contains a control character or a Unicode bidi override.
    ControlCharacter => "CONTROL_CHARACTER",
    /// The list has fewer entries than required.
    TooFew => "TOO_FEW",
    /// The list has more entries than allowed.
    TooMany => "TOO_MANY",
    /// The entry equals an earlier entry of the same list after normalisation.
    Duplicate => "DUPLICATE",
    /// A bounded number is outside its range.
    NumberOutOfRange => "NUMBER_OUT_OF_RANGE",
    /// A bare domain name is not a valid host name (characters, hyphens, empty labels, IDNA).
    DomainInvalid => "DOMAIN_INVALID",
    /// A bare domain name, or one of its labels, exceeds the DNS length limits (253 / 63).
    DomainTooLong => "DOMAIN_TOO_LONG",
    /// A bare domain name ends with a dot.
    DomainTrailingDot => "DOMAIN_TRAILING_DOT",
    /// A bare domain name has a single label (e.g. `intranet`).
    DomainSingleLabel => "DOMAIN_SINGLE_LABEL",
    /// A bare domain name is an IP address.
    DomainIpAddress => "DOMAIN_IP_ADDRESS",
    /// A bare domain name is `localhost` or below it.
    DomainLocalhost => "DOMAIN_LOCALHOST",
    /// A bare domain name is under a special-use or private-use TLD (`.test`, `.local`, …).
    DomainSpecialUse => "DOMAIN_SPECIAL_USE",
    /// A label of a bare domain name mixes scripts like a look-alike name (`pаypal` with a
    /// Cyrillic `а`).
    DomainMixedScript => "DOMAIN_MIXED_SCRIPT",
    /// The email address is not a plain `local@domain` address.
    EmailInvalid => "EMAIL_INVALID",
    /// The local part (before `@`) is longer than 64 octets.
    EmailLocalPartTooLong => "EMAIL_LOCAL_PART_TOO_LONG",
    /// The whole address is longer than 254 octets (in its A-label form).
    EmailTooLong => "EMAIL_TOO_LONG",
    /// The email domain ends with a dot.
    EmailDomainTrailingDot => "EMAIL_DOMAIN_TRAILING_DOT",
    /// The email domain has a single label.
    EmailDomainSingleLabel => "EMAIL_DOMAIN_SINGLE_LABEL",
    /// The email domain is an IP address or an address literal such as `[192.0.2.1]`.
    EmailDomainIpLiteral => "EMAIL_DOMAIN_IP_LITERAL",
    /// The email domain is `localhost` or below it.
    EmailDomainLocalhost => "EMAIL_DOMAIN_LOCALHOST",
    /// The email domain is under a special-use or private-use TLD (`.test`, `.local`, …).
    EmailDomainSpecialUse => "EMAIL_DOMAIN_SPECIAL_USE",
    /// A label of the email domain mixes scripts like a look-alike name.
    EmailDomainMixedScript => "EMAIL_DOMAIN_MIXED_SCRIPT",
    /// The email domain is not a valid host name (IDNA failure, bad characters, label length).
    EmailDomainInvalid => "EMAIL_DOMAIN_INVALID",
    /// The email domain is itself a public suffix (e.g. `co.uk`).
    EmailDomainPublicSuffix => "EMAIL_DOMAIN_PUBLIC_SUFFIX",
    /// The sender address is a per-recipient or per-message address (VERP, SRS, BATV, tokens).
    SenderNotStatic => "SENDER_NOT_STATIC",
    /// The URL cannot be parsed or is not written in the plain `https://host/path` form.
    UrlInvalid => "URL_INVALID",
    /// The URL's scheme is not `https`.
    UrlNotHttps => "URL_NOT_HTTPS",
    /// The URL contains a user name or password (`user:pass@`).
    UrlHasUserinfo => "URL_HAS_USERINFO",
    /// The URL's host is an IP address (in any notation browsers accept).
    UrlIpLiteral => "URL_IP_LITERAL",
    /// The URL's host is `localhost` or below it.
    UrlLocalhost => "URL_LOCALHOST",
    /// The URL's host has a single label.
    UrlHostSingleLabel => "URL_HOST_SINGLE_LABEL",
    /// The URL's host is itself a public suffix (e.g. `co.uk`).
    UrlHostPublicSuffix => "URL_HOST_PUBLIC_SUFFIX",
    /// The URL's host is under a special-use or private-use TLD (`.test`, `.local`, …).
    UrlHostSpecialUse => "URL_HOST_SPECIAL_USE",
    /// A label of the URL's host mixes scripts like a look-alike name.
    UrlHostMixedScript => "URL_HOST_MIXED_SCRIPT",
    /// The URL's host is not a valid DNS host name (characters, hyphens, dots, label length).
    UrlHostInvalid => "URL_HOST_INVALID",
    /// The URL names a port other than 443.
    UrlPortNotAllowed => "URL_PORT_NOT_ALLOWED",
    /// The URL's host reads differently to a plain RFC 3986 reader than to a browser (WHATWG),
    /// e.g. through percent-encoding in the host; the two could call different servers.
    UrlHostAmbiguous => "URL_HOST_AMBIGUOUS",
    /// The URL has a query (`?…`) or fragment (`#…`) where neither is allowed.
    UrlHasQueryOrFragment => "URL_HAS_QUERY_OR_FRAGMENT",
    /// The URL is longer than 2048 characters.
    UrlTooLong => "URL_TOO_LONG",
    /// The phone number is not an E.164 number.
    PhoneInvalid => "PHONE_INVALID",
    /// The public key is not a readable PEM public key.
    PublicKeyInvalid => "PUBLIC_KEY_INVALID",
    /// The public key is a valid key of another algorithm (EC, Ed25519, RSASSA-PSS, …).
    PublicKeyNotRsa => "PUBLIC_KEY_NOT_RSA",
    /// The RSA modulus is shorter than 2048 bits.
    PublicKeyTooShort => "PUBLIC_KEY_TOO_SHORT",
    /// The RSA modulus is longer than 4096 bits, more than the signature verifier accepts.
    PublicKeyTooLong => "PUBLIC_KEY_TOO_LONG",
}

impl fmt::Display for ValidationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ValidationCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Why one value was rejected: a stable [`ValidationCode`] and a sentence a person can act on.
/// The message may quote the input (truncated, control characters escaped) but never carries
/// the field path; the caller adds that.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct FieldError {
    /// Machine-readable reason.
    pub code: ValidationCode,
    /// Human-readable explanation, one or two sentences.
    pub message: String,
}

impl FieldError {
    /// Builds an error from a code and a message.
    pub fn new(code: ValidationCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// How many characters of an offending input a message quotes.
const QUOTE_MAX_CHARS: usize = 80;

/// Quotes `input` for an error message: wrapped in double quotes, cut to 80 characters with
/// `…`, and with control, bidi and invisible characters escaped as `\u{…}` so the message can
/// be shown and logged safely.
pub(crate) fn quote(input: &str) -> String {
    let mut out = String::with_capacity(input.len().min(4 * QUOTE_MAX_CHARS) + 2);
    out.push('"');
    for (index, c) in input.chars().enumerate() {
        if index == QUOTE_MAX_CHARS {
            out.push('…');
            break;
        }
        if c == '"' || c == '\\' || is_forbidden_char(c) || is_invisible(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// A Unicode bidi embedding/override/isolate control (U+202A..U+202E, U+2066..U+2069), which can
/// make text display in a different order than it is stored ("Trojan Source").
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A character no value accepts: a control character (C0, DEL, C1) or a bidi control.
pub(crate) fn is_forbidden_char(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// Zero-width and directional marks that are legal in some values but escaped when quoted.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}' | '\u{061C}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
    )
}

/// Rejects a forbidden character (see [`is_forbidden_char`]); `\n` and `\t` pass when
/// `allow_newline_and_tab`. `what` names the value in the message ("The email address").
pub(crate) fn reject_control_chars(
    input: &str,
    what: &str,
    allow_newline_and_tab: bool,
) -> Result<(), FieldError> {
    let found = input
        .chars()
        .find(|&c| is_forbidden_char(c) && !(allow_newline_and_tab && (c == '\n' || c == '\t')));
    match found {
        None => Ok(()),
        Some(c) => {
            let kind = if is_bidi_control(c) {
                "a bidirectional-text override"
            } else if c == '\r' || c == '\n' {
                "a line break"
            } else {
                "a control character"
            };
            Err(FieldError::new(
                ValidationCode::ControlCharacter,
                format!(
                    "{what} contains {kind} (U+{:04X}), which is not allowed: {}.",
                    u32::from(c),
                    quote(input)
                ),
            ))
        }
    }
}

/// How [`parse_list`] bounds a list and names its entries in messages.
pub(crate) struct ListRules {
    /// Fewest entries allowed.
    pub min: usize,
    /// Most entries allowed.
    pub max: usize,
    /// Singular noun for one entry ("sender address").
    pub singular: &'static str,
    /// Plural noun ("sender addresses").
    pub plural: &'static str,
    /// Sentence explaining how entries are compared, appended to duplicate messages.
    pub comparison: &'static str,
}

/// Most entry errors [`parse_list`] collects: one more than a payload lists
/// (`crate::error::MAX_USER_ERRORS`), so that the payload knows to add `TOO_MANY_ERRORS`.
pub(crate) const MAX_LIST_ERRORS: usize = crate::error::MAX_USER_ERRORS + 1;

/// Parses the entries, checks the count and reports each duplicate (by `key`) at the later
/// index. Problems are collected rather than stopping at the first, within bounds that keep the
/// work small whatever the input's size: at most [`MAX_LIST_ERRORS`] errors are collected, and
/// of a list longer than its maximum only the first `max + MAX_LIST_ERRORS` entries are checked
/// (the count error says how many were given).
pub(crate) fn parse_list<T, K>(
    inputs: &[String],
    rules: &ListRules,
    parse: impl Fn(&str) -> Result<T, FieldError>,
    key: impl Fn(&T) -> K,
) -> Result<Vec<T>, ListErrors>
where
    K: Eq + Hash,
{
    let mut errors: ListErrors = Vec::new();
    if inputs.len() < rules.min {
        let noun = if rules.min == 1 {
            rules.singular
        } else {
            rules.plural
        };
        errors.push((
            None,
            FieldError::new(
                ValidationCode::TooFew,
                format!("Add at least {} {noun}.", rules.min),
            ),
        ));
    }
    if inputs.len() > rules.max {
        errors.push((
            None,
            FieldError::new(
                ValidationCode::TooMany,
                format!(
                    "At most {} {} are allowed, but {} were given; remove {}.",
                    rules.max,
                    rules.plural,
                    inputs.len(),
                    inputs.len() - rules.max
                ),
            ),
        ));
    }
    let checked = inputs.len().min(rules.max.saturating_add(MAX_LIST_ERRORS));
    let mut parsed = Vec::with_capacity(checked);
    let mut first_seen: HashMap<K, usize> = HashMap::new();
    for (index, input) in inputs.iter().enumerate().take(checked) {
        if errors.len() >= MAX_LIST_ERRORS {
            break;
        }
        let value = match parse(input) {
            Ok(value) => value,
            Err(error) => {
                errors.push((Some(index), error));
                continue;
            }
        };
        match first_seen.entry(key(&value)) {
            Entry::Vacant(slot) => {
                slot.insert(index);
            }
            Entry::Occupied(slot) => {
                let earlier = *slot.get();
                errors.push((
                    Some(index),
                    FieldError::new(
                        ValidationCode::Duplicate,
                        format!(
                            "{} repeats the {} at position {} ({}). {}",
                            quote(input),
                            rules.singular,
                            earlier + 1,
                            quote(&inputs[earlier]),
                            rules.comparison
                        ),
                    ),
                ));
            }
        }
        parsed.push(value);
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_screaming_snake_case_and_display_as_their_code() {
        let mut seen = std::collections::HashSet::new();
        for code in ValidationCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "duplicate code {text}");
            assert!(!text.is_empty() && !text.starts_with('_') && !text.ends_with('_'));
            assert!(
                text.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{text} is not SCREAMING_SNAKE_CASE"
            );
            assert_eq!(code.to_string(), text);
        }
    }

    #[test]
    fn codes_serialize_as_their_string() {
        let error = FieldError::new(ValidationCode::UrlNotHttps, "Use https.");
        let json = serde_json::to_value(&error).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({"code": "URL_NOT_HTTPS", "message": "Use https."})
        );
        assert_eq!(error.to_string(), "URL_NOT_HTTPS: Use https.");
    }

    #[test]
    fn quoting_escapes_control_and_bidi_characters_and_truncates() {
        let cases: &[(&str, &str)] = &[
            ("plain", "\"plain\""),
            ("a\r\nb", "\"a\\r\\nb\""),
            ("nul\0", "\"nul\\u{0}\""),
            ("ab\u{202E}cd", "\"ab\\u{202e}cd\""),
            ("zero\u{200B}width", "\"zero\\u{200b}width\""),
            ("say \"hi\"", "\"say \\\"hi\\\"\""),
            ("bücher", "\"bücher\""),
        ];
        for (input, expected) in cases {
            assert_eq!(quote(input), *expected, "input {input:?}");
        }
        let long = "x".repeat(200);
        let quoted = quote(&long);
        assert_eq!(quoted.chars().count(), 80 + 3);
        assert!(quoted.ends_with("…\""));
    }

    #[test]
    fn control_characters_are_rejected_unless_newline_and_tab_are_allowed() {
        let cases: &[(&str, bool, bool)] = &[
            ("fine text", false, true),
            ("line\nbreak", false, false),
            ("line\nbreak\tand tab", true, true),
            ("carriage\rreturn", true, false),
            ("nul\0byte", true, false),
            ("del\u{7F}", true, false),
            ("c1\u{85}next line", true, false),
            ("bidi\u{202E}override", true, false),
            ("isolate\u{2066}x", true, false),
            ("zero\u{200B}width is not a control", false, true),
        ];
        for (input, allow, ok) in cases {
            let result = reject_control_chars(input, "The value", *allow);
            assert_eq!(result.is_ok(), *ok, "input {input:?}");
            if let Err(error) = result {
                assert_eq!(error.code, ValidationCode::ControlCharacter);
            }
        }
    }

    fn parse_word(input: &str) -> Result<String, FieldError> {
        if input.is_empty() {
            Err(FieldError::new(ValidationCode::Required, "Enter a word."))
        } else {
            Ok(input.to_lowercase())
        }
    }

    const RULES: ListRules = ListRules {
        min: 1,
        max: 3,
        singular: "word",
        plural: "words",
        comparison: "Words are compared case-insensitively.",
    };

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn list_parsing_collects_every_error_with_its_index() {
        let errors = parse_list(
            &strings(&["a", "", "A", "b", "a"]),
            &RULES,
            parse_word,
            |w| w.clone(),
        )
        .expect_err("invalid list");
        let codes: Vec<(Option<usize>, ValidationCode)> = errors
            .iter()
            .map(|(index, error)| (*index, error.code))
            .collect();
        assert_eq!(
            codes,
            vec![
                (None, ValidationCode::TooMany),
                (Some(1), ValidationCode::Required),
                (Some(2), ValidationCode::Duplicate),
                (Some(4), ValidationCode::Duplicate),
            ]
        );
        assert!(errors[2].1.message.contains("position 1"), "{errors:?}");
    }

    #[test]
    fn a_huge_list_stops_after_a_bounded_number_of_errors_and_entries() {
        let rules = ListRules {
            min: 1,
            max: 3,
            singular: "word",
            plural: "words",
            comparison: "",
        };
        let calls = std::cell::Cell::new(0usize);
        let counting = |input: &str| {
            calls.set(calls.get() + 1);
            parse_word(input)
        };
        // 20,000 invalid entries: the count error and MAX_LIST_ERRORS - 1 entry errors.
        let invalid: Vec<String> = vec![String::new(); 20_000];
        let errors = parse_list(&invalid, &rules, counting, Clone::clone).expect_err("invalid");
        assert_eq!(errors.len(), MAX_LIST_ERRORS);
        assert_eq!(errors[0].0, None);
        assert_eq!(errors[0].1.code, ValidationCode::TooMany);
        assert!(
            errors[0].1.message.contains("20000 were given"),
            "{:?}",
            errors[0]
        );
        assert_eq!(errors[MAX_LIST_ERRORS - 1].0, Some(MAX_LIST_ERRORS - 2));
        assert!(calls.get() <= MAX_LIST_ERRORS);
        // 20,000 valid entries: only the count error, after checking a bounded prefix.
        calls.set(0);
        let valid: Vec<String> = (0..20_000).map(|i| format!("w{i}")).collect();
        let errors = parse_list(&valid, &rules, counting, Clone::clone).expect_err("too many");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].1.code, ValidationCode::TooMany);
        assert_eq!(calls.get(), 3 + MAX_LIST_ERRORS);
        // Within the maximum, every entry is still checked and every error reported.
        let two_bad = strings(&["", "ok"]);
        let errors = parse_list(&two_bad, &rules, parse_word, Clone::clone).expect_err("bad");
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn an_empty_list_is_too_few() {
        let errors = parse_list(&[], &RULES, parse_word, |w| w.clone()).expect_err("empty");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, None);
        assert_eq!(errors[0].1.code, ValidationCode::TooFew);
    }

    #[test]
    fn a_valid_list_keeps_its_order() {
        let words = parse_list(&strings(&["b", "A"]), &RULES, parse_word, |w| w.clone())
            .expect("valid list");
        assert_eq!(words, vec!["b".to_owned(), "a".to_owned()]);
    }
}
