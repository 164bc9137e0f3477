//! `EmailAddress`: a plain RFC 5321/5322 `local@domain` mailbox whose domain is a public,
//! normalised [`DomainName`], compared case-insensitively.
//!
//! Local-part syntax (dot-atom) is checked by the `email_address` crate. Everything that crate
//! gets wrong or leaves open for our purposes is decided here, before it sees the input (see
//! the tests named `library_…` for the behaviour we guard against): control characters,
//! display names, quoted local parts, comments, non-ASCII local parts, address literals, the
//! 64/254-octet limits, and the domain (IDNA, labels, public suffix).

use std::fmt;
use std::hash::{Hash, Hasher};

use super::domain_name::{DomainCodes, DomainName};
use super::{FieldError, ValidationCode, quote, reject_control_chars};

/// Longest local part in octets (RFC 5321 §4.5.3.1.1).
const MAX_LOCAL_PART_OCTETS: usize = 64;
/// Longest address in octets: the 256-octet reverse-path less its angle brackets
/// (RFC 5321 §4.5.3.1.3, RFC 3696 erratum 1690).
const MAX_ADDRESS_OCTETS: usize = 254;
/// Inputs longer than this are refused before any further work.
const MAX_INPUT_BYTES: usize = 1024;

/// Codes for the domain of an email address.
const EMAIL_DOMAIN_CODES: DomainCodes = DomainCodes {
    noun: "The email domain",
    empty: ValidationCode::EmailInvalid,
    invalid: ValidationCode::EmailDomainInvalid,
    too_long: ValidationCode::EmailTooLong,
    trailing_dot: ValidationCode::EmailDomainTrailingDot,
    ip_address: ValidationCode::EmailDomainIpLiteral,
    localhost: ValidationCode::EmailDomainLocalhost,
    single_label: ValidationCode::EmailDomainSingleLabel,
    special_use: ValidationCode::EmailDomainSpecialUse,
    mixed_script: ValidationCode::EmailDomainMixedScript,
};

/// A mailbox address `local@domain`.
///
/// Accepted: an ASCII dot-atom local part of at most 64 octets, `@`, and a [`DomainName`] that
/// is not a public suffix; at most 254 octets in all. Refused: display names and angle
/// brackets, quoted local parts (`"a b"@x`) and comments (`a(c)@x`) — legal in RFC 5322 but
/// mishandled by many systems and useless for a service's sender address — non-ASCII local
/// parts (they need SMTPUTF8 end to end, and case-folding them has no agreed meaning),
/// address literals (`a@[192.0.2.1]`), IP, single-label and trailing-dot domains, and any
/// control character (so `a@b.com\r\nBcc: x@y.com` cannot inject a header).
///
/// The value keeps the local part as written, for display, and the domain in lower-case
/// A-label form. Equality, hashing and duplicate detection use [`EmailAddress::normalized`],
/// which also lower-cases the local part: RFC 5321 lets a server treat local parts
/// case-sensitively, but practically none do, and two registrations differing only in case
/// would name the same mailbox. Dots and `+tags` are not folded (that is a Gmail convention,
/// not a standard).
#[derive(Debug, Clone)]
pub struct EmailAddress {
    /// `local@domain`, local part as written, domain normalised.
    address: String,
    /// Byte offset of the `@` in `address`.
    at: usize,
    /// The parsed domain.
    domain: DomainName,
    /// Comparison key: `address` with the local part lower-cased.
    normalized: String,
}

impl EmailAddress {
    /// Parses a single address; see the type documentation for the rules.
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        if input.is_empty() {
            return Err(FieldError::new(
                ValidationCode::Required,
                "Enter an email address.",
            ));
        }
        reject_control_chars(input, "The email address", false)?;
        if input.len() > MAX_INPUT_BYTES {
            return Err(FieldError::new(
                ValidationCode::EmailTooLong,
                format!(
                    "The email address is {} octets long; an address can have at most \
                     {MAX_ADDRESS_OCTETS}.",
                    input.len()
                ),
            ));
        }
        if input.trim() != input {
            return Err(invalid(
                input,
                "starts or ends with whitespace; remove it (addresses are not trimmed \
                 automatically)",
            ));
        }
        if input.contains(['<', '>']) {
            return Err(invalid(
                input,
                "must be the bare address, such as name@example.com, without a display name \
                 or angle brackets",
            ));
        }
        let Some((local, domain_input)) = input.rsplit_once('@') else {
            return Err(invalid(
                input,
                "is missing the @ between the name and the domain",
            ));
        };
        check_local_part(input, local)?;
        if domain_input.is_empty() {
            return Err(invalid(input, "has nothing after the @"));
        }
        if domain_input.starts_with('[') {
            return Err(FieldError::new(
                ValidationCode::EmailDomainIpLiteral,
                format!(
                    "The email address {} uses an address literal as its domain; use a \
                     domain name.",
                    quote(input)
                ),
            ));
        }
        let domain = DomainName::parse_detailed(domain_input, false)
            .map_err(|problem| problem.into_field_error(domain_input, &EMAIL_DOMAIN_CODES))?;
        let address = format!("{local}@{domain}");
        if address.len() > MAX_ADDRESS_OCTETS {
            return Err(FieldError::new(
                ValidationCode::EmailTooLong,
                format!(
                    "The email address {} is {} octets long in its DNS (A-label) form; an \
                     address can have at most {MAX_ADDRESS_OCTETS}.",
                    quote(input),
                    address.len()
                ),
            ));
        }
        let options = email_address::Options::default()
            .without_display_text()
            .without_domain_literal()
            .with_required_tld();
        if email_address::EmailAddress::parse_with_options(&address, options).is_err() {
            return Err(invalid(
                input,
                "has an invalid name before the @: use letters, digits and \
                 ! # $ % & ' * + - / = ? ^ _ ` { | } ~, with single dots between them (not \
                 at the start or end)",
            ));
        }
        if domain.is_public_suffix() {
            return Err(FieldError::new(
                ValidationCode::EmailDomainPublicSuffix,
                format!(
                    "The email domain {} is a public suffix that nobody can own as a whole \
                     (like co.uk); use your organisation's domain.",
                    quote(domain_input)
                ),
            ));
        }
        let at = local.len();
        let normalized = format!("{}@{domain}", local.to_ascii_lowercase());
        Ok(Self {
            address,
            at,
            domain,
            normalized,
        })
    }

    /// The address with the local part as written and the domain normalised
    /// (`Bestellung@xn--bcher-kva.de`).
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The local part (before the `@`), as written.
    pub fn local_part(&self) -> &str {
        &self.address[..self.at]
    }

    /// The domain, lower-case A-labels.
    pub fn domain(&self) -> &DomainName {
        &self.domain
    }

    /// The comparison key used by equality and duplicate detection: local part lower-cased,
    /// domain in lower-case A-label form (`bestellung@xn--bcher-kva.de`).
    pub fn normalized(&self) -> &str {
        &self.normalized
    }
}

/// Checks the local part for what we refuse before the library sees it.
fn check_local_part(input: &str, local: &str) -> Result<(), FieldError> {
    if local.is_empty() {
        return Err(invalid(input, "has nothing before the @"));
    }
    if local.contains('"') {
        return Err(invalid(
            input,
            "uses a quoted name before the @, which is not accepted; use a plain address",
        ));
    }
    if local.contains(['(', ')']) {
        return Err(invalid(
            input,
            "contains a comment in parentheses, which is not accepted; use a plain address",
        ));
    }
    if local.contains(char::is_whitespace) {
        return Err(invalid(input, "contains whitespace"));
    }
    if !local.is_ascii() {
        return Err(invalid(
            input,
            "has non-ASCII characters before the @; internationalised mailbox names are \
             not supported",
        ));
    }
    if local.len() > MAX_LOCAL_PART_OCTETS {
        return Err(FieldError::new(
            ValidationCode::EmailLocalPartTooLong,
            format!(
                "The part before the @ in {} is {} characters long; it can have at most \
                 {MAX_LOCAL_PART_OCTETS}.",
                quote(input),
                local.len()
            ),
        ));
    }
    Ok(())
}

/// An `EMAIL_INVALID` error: "The email address "…" {reason}."
fn invalid(input: &str, reason: &str) -> FieldError {
    FieldError::new(
        ValidationCode::EmailInvalid,
        format!("The email address {} {reason}.", quote(input)),
    )
}

impl PartialEq for EmailAddress {
    fn eq(&self, other: &Self) -> bool {
        self.normalized == other.normalized
    }
}

impl Eq for EmailAddress {}

impl Hash for EmailAddress {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.normalized.hash(state);
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

string_serde!(EmailAddress);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_addresses_keep_the_local_part_and_normalise_the_domain() {
        let cases: &[(&str, &str, &str)] = &[
            ("a@contoso.com", "a@contoso.com", "a@contoso.com"),
            ("A@Contoso.COM", "A@contoso.com", "a@contoso.com"),
            (
                "Bestellung@BÜCHER.de",
                "Bestellung@xn--bcher-kva.de",
                "bestellung@xn--bcher-kva.de",
            ),
            (
                "x@xn--bcher-kva.de",
                "x@xn--bcher-kva.de",
                "x@xn--bcher-kva.de",
            ),
            (
                "first.last+tag@mail.example.co.uk",
                "first.last+tag@mail.example.co.uk",
                "first.last+tag@mail.example.co.uk",
            ),
            (
                "o'brien@contoso.com",
                "o'brien@contoso.com",
                "o'brien@contoso.com",
            ),
            (
                "1234@123.example.com",
                "1234@123.example.com",
                "1234@123.example.com",
            ),
        ];
        for (input, shown, key) in cases {
            let email = EmailAddress::parse(input).expect(input);
            assert_eq!(email.as_str(), *shown, "input {input:?}");
            assert_eq!(email.normalized(), *key, "input {input:?}");
            assert_eq!(email.to_string(), *shown);
        }
    }

    #[test]
    fn parts_are_exposed() {
        let email = EmailAddress::parse("Bestellung@bücher.de").expect("valid");
        assert_eq!(email.local_part(), "Bestellung");
        assert_eq!(email.domain().as_str(), "xn--bcher-kva.de");
    }

    #[test]
    fn equality_ignores_case_and_idn_spelling() {
        let pairs = [
            ("A@Contoso.COM", "a@contoso.com"),
            ("x@bücher.de", "x@xn--bcher-kva.de"),
            ("Bestellung@BÜCHER.de", "bestellung@xn--bcher-kva.de"),
        ];
        for (a, b) in pairs {
            assert_eq!(
                EmailAddress::parse(a).expect(a),
                EmailAddress::parse(b).expect(b)
            );
        }
        assert_ne!(
            EmailAddress::parse("a.b@contoso.com").expect("valid"),
            EmailAddress::parse("ab@contoso.com").expect("valid")
        );
    }

    #[test]
    fn invalid_addresses_get_specific_codes() {
        let local_65 = format!("{}@contoso.com", "a".repeat(65));
        let local_64 = format!("{}@contoso.com", "a".repeat(64));
        let label_64 = format!("a@{}.com", "b".repeat(64));
        // 64 + 1 + 190 = 255 octets, every label within limits.
        let whole_255 = format!(
            "{}@{}.{}.{}.com",
            "a".repeat(64),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(58)
        );
        let whole_254 = format!(
            "{}@{}.{}.{}.com",
            "a".repeat(64),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(57)
        );
        assert_eq!(whole_255.len(), 255);
        assert!(EmailAddress::parse(&whole_254).is_ok());
        assert!(EmailAddress::parse(&local_64).is_ok());
        let huge = "a".repeat(5000);
        let cases: Vec<(&str, ValidationCode)> = vec![
            ("", ValidationCode::Required),
            (" ", ValidationCode::EmailInvalid),
            (" a@contoso.com", ValidationCode::EmailInvalid),
            ("a@contoso.com ", ValidationCode::EmailInvalid),
            (
                "a@contoso.com\r\nBcc: x@y.com",
                ValidationCode::ControlCharacter,
            ),
            ("a@contoso.com\n", ValidationCode::ControlCharacter),
            ("a\0@contoso.com", ValidationCode::ControlCharacter),
            ("a\u{85}b@contoso.com", ValidationCode::ControlCharacter),
            ("a\u{202E}b@contoso.com", ValidationCode::ControlCharacter),
            ("a\tb@contoso.com", ValidationCode::ControlCharacter),
            ("contoso.com", ValidationCode::EmailInvalid),
            ("@contoso.com", ValidationCode::EmailInvalid),
            ("a@", ValidationCode::EmailInvalid),
            ("A <a@contoso.com>", ValidationCode::EmailInvalid),
            ("<a@contoso.com>", ValidationCode::EmailInvalid),
            ("\"a b\"@contoso.com", ValidationCode::EmailInvalid),
            ("\"a@b\"@contoso.com", ValidationCode::EmailInvalid),
            ("a(comment)@contoso.com", ValidationCode::EmailInvalid),
            ("a b@contoso.com", ValidationCode::EmailInvalid),
            ("a@b@contoso.com", ValidationCode::EmailInvalid),
            (".a@contoso.com", ValidationCode::EmailInvalid),
            ("a.@contoso.com", ValidationCode::EmailInvalid),
            ("a..b@contoso.com", ValidationCode::EmailInvalid),
            ("a,b@contoso.com", ValidationCode::EmailInvalid),
            ("a\\b@contoso.com", ValidationCode::EmailInvalid),
            ("jörg@contoso.com", ValidationCode::EmailInvalid),
            (local_65.as_str(), ValidationCode::EmailLocalPartTooLong),
            (whole_255.as_str(), ValidationCode::EmailTooLong),
            (huge.as_str(), ValidationCode::EmailTooLong),
            ("a@contoso.com.", ValidationCode::EmailDomainTrailingDot),
            ("a@contoso", ValidationCode::EmailDomainSingleLabel),
            ("a@localhost", ValidationCode::EmailDomainLocalhost),
            ("a@mail.localhost", ValidationCode::EmailDomainLocalhost),
            ("a@contoso.test", ValidationCode::EmailDomainSpecialUse),
            ("a@printer.local", ValidationCode::EmailDomainSpecialUse),
            ("a@corp.internal", ValidationCode::EmailDomainSpecialUse),
            ("a@mail.example", ValidationCode::EmailDomainSpecialUse),
            ("a@x.invalid", ValidationCode::EmailDomainSpecialUse),
            ("a@x.onion", ValidationCode::EmailDomainSpecialUse),
            ("a@x.alt", ValidationCode::EmailDomainSpecialUse),
            ("a@nas.home.arpa", ValidationCode::EmailDomainSpecialUse),
            (
                "a@p\u{0430}ypal.com",
                ValidationCode::EmailDomainMixedScript,
            ),
            (
                "a@xn--pypal-4ve.com",
                ValidationCode::EmailDomainMixedScript,
            ),
            ("a@[192.0.2.1]", ValidationCode::EmailDomainIpLiteral),
            ("a@[IPv6:2001:db8::1]", ValidationCode::EmailDomainIpLiteral),
            ("a@192.0.2.1", ValidationCode::EmailDomainIpLiteral),
            ("a@co.uk", ValidationCode::EmailDomainPublicSuffix),
            ("a@github.io", ValidationCode::EmailDomainPublicSuffix),
            ("a@公司.cn", ValidationCode::EmailDomainPublicSuffix),
            (label_64.as_str(), ValidationCode::EmailDomainInvalid),
            ("a@ex!ample.com", ValidationCode::EmailDomainInvalid),
            ("a@ex_ample.com", ValidationCode::EmailDomainInvalid),
            ("a@-contoso.com", ValidationCode::EmailDomainInvalid),
            ("a@contoso..com", ValidationCode::EmailDomainInvalid),
            ("a@xn--zz.com", ValidationCode::EmailDomainInvalid),
        ];
        for (input, code) in cases {
            let error = EmailAddress::parse(input).expect_err(input);
            assert_eq!(error.code, code, "input {input:?}: {}", error.message);
        }
    }

    #[test]
    fn messages_quote_the_input_with_control_characters_escaped() {
        let error = EmailAddress::parse("a@b.com\r\nBcc: x@y.com").expect_err("injection");
        assert!(error.message.contains("\\r\\n"), "{}", error.message);
        assert!(!error.message.contains('\r'));
    }

    #[test]
    fn serde_round_trips_and_rejects_invalid_stored_values() {
        let email = EmailAddress::parse("Bestellung@BÜCHER.de").expect("valid");
        let json = serde_json::to_string(&email).expect("serialises");
        assert_eq!(json, "\"Bestellung@xn--bcher-kva.de\"");
        let back: EmailAddress = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, email);
        assert_eq!(back.as_str(), email.as_str());
        for stored in ["\"a@co.uk\"", "\"a@[192.0.2.1]\"", "\"x\"", "null"] {
            assert!(
                serde_json::from_str::<EmailAddress>(stored).is_err(),
                "{stored} must not load"
            );
        }
    }

    // Known defects of `email_address` 0.2.10, which `EmailAddress::parse` guards against.
    // If one of these starts failing, the library changed: revisit the guard.

    fn library_accepts(input: &str) -> bool {
        email_address::EmailAddress::parse_with_options(
            input,
            email_address::Options::default()
                .without_display_text()
                .without_domain_literal(),
        )
        .is_ok()
    }

    #[test]
    fn library_defect_accepts_addresses_longer_than_254_octets() {
        let long = format!(
            "{}@{}.{}.{}.{}",
            "a".repeat(64),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63),
            "e".repeat(57)
        );
        assert_eq!(long.len(), 314);
        assert!(library_accepts(&long));
        assert_eq!(
            EmailAddress::parse(&long).expect_err("too long").code,
            ValidationCode::EmailTooLong
        );
    }

    #[test]
    fn library_defect_allows_a_254_octet_domain() {
        let domain = format!(
            "{}.{}.{}.{}",
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63),
            "e".repeat(62)
        );
        assert_eq!(domain.len(), 254);
        assert!(library_accepts(&format!("a@{domain}")));
        assert!(EmailAddress::parse(&format!("a@{domain}")).is_err());
    }

    #[test]
    fn library_defect_accepts_bidi_overrides_and_c1_controls_in_the_local_part() {
        for input in ["a\u{202E}b@example.com", "a\u{85}b@example.com"] {
            assert!(library_accepts(input), "{input:?}");
            assert_eq!(
                EmailAddress::parse(input).expect_err(input).code,
                ValidationCode::ControlCharacter
            );
        }
    }

    #[test]
    fn library_defect_accepts_non_hostname_characters_in_the_domain() {
        for input in ["a@ex!ample.com", "a@ex_ample.com", "a@ex{ample.com"] {
            assert!(library_accepts(input), "{input:?}");
            assert_eq!(
                EmailAddress::parse(input).expect_err(input).code,
                ValidationCode::EmailDomainInvalid
            );
        }
    }

    #[test]
    fn library_defect_measures_unicode_labels_in_utf8_bytes_not_a_label_octets() {
        // 32 × "ü" is 64 UTF-8 bytes but the A-label `xn--tda…` is only 36 octets.
        let input = format!("a@{}.de", "ü".repeat(32));
        assert!(!library_accepts(&input));
        assert!(EmailAddress::parse(&input).is_ok());
    }

    #[test]
    fn library_accepts_quoted_local_parts_and_address_literals_by_default() {
        let defaults = email_address::Options::default();
        for input in ["\"a b\"@example.com", "a@[192.0.2.1]", "A <a@example.com>"] {
            assert!(
                email_address::EmailAddress::parse_with_options(input, defaults).is_ok(),
                "{input:?}"
            );
            assert!(EmailAddress::parse(input).is_err(), "{input:?}");
        }
    }
}
