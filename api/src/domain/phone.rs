//! `PhoneNumber`: a contact phone number in E.164 form (`+14255550100`).

use std::fmt;

use super::{FieldError, ValidationCode, quote, reject_control_chars};

/// Fewest digits after the `+` accepted (the shortest national numbers in use).
const MIN_DIGITS: usize = 8;
/// Most digits after the `+` (ITU-T E.164 §6).
const MAX_DIGITS: usize = 15;
/// Inputs longer than this are refused outright.
const MAX_INPUT_CHARS: usize = 64;

/// An international phone number in E.164 form: `+`, then 8 to 15 ASCII digits, the first not
/// `0` (the country code). Spaces, hyphens, dots and parentheses in the input are accepted as
/// grouping and dropped: `+1 (425) 555-0100` is stored as `+14255550100`. Anything else
/// (letters, extensions, a leading `00` instead of `+`, non-ASCII digits, a `(0)` trunk
/// prefix, whose meaning varies by country) is refused with `PHONE_INVALID`. Only the shape is checked, not whether the number is assigned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses a phone number (see the type documentation).
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        if input.trim().is_empty() {
            return Err(FieldError::new(
                ValidationCode::Required,
                "Enter a phone number.",
            ));
        }
        reject_control_chars(input, "The phone number", false)?;
        if input.chars().count() > MAX_INPUT_CHARS {
            return Err(invalid(input, "is too long to be a phone number"));
        }
        if input.contains("(0)") {
            return Err(invalid(
                input,
                "contains \"(0)\", a national trunk prefix that is not dialled from abroad; \
                 remove it",
            ));
        }
        let mut grouping_removed = input
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'));
        if grouping_removed.next() != Some('+') {
            return Err(invalid(
                input,
                "must start with + and the country code, e.g. +1 425 555 0100",
            ));
        }
        let digits: String = grouping_removed.collect();
        if let Some(c) = digits.chars().find(|c| !c.is_ascii_digit()) {
            return Err(invalid(
                input,
                &format!(
                    "contains {}; use only digits after the +, optionally grouped with spaces, \
                     hyphens, dots or parentheses",
                    quote(&c.to_string())
                ),
            ));
        }
        if digits.starts_with('0') {
            return Err(invalid(
                input,
                "has a 0 where the country code should start",
            ));
        }
        if !(MIN_DIGITS..=MAX_DIGITS).contains(&digits.len()) {
            return Err(invalid(
                input,
                &format!(
                    "has {} digits; an international number has {MIN_DIGITS} to {MAX_DIGITS} \
                     digits after the +",
                    digits.len()
                ),
            ));
        }
        Ok(Self(format!("+{digits}")))
    }

    /// The number in E.164 form, e.g. `+14255550100`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A `PHONE_INVALID` error: "The phone number "…" {reason}."
fn invalid(input: &str, reason: &str) -> FieldError {
    FieldError::new(
        ValidationCode::PhoneInvalid,
        format!("The phone number {} {reason}.", quote(input)),
    )
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(PhoneNumber);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_numbers_are_normalised_to_e164() {
        let cases: &[(&str, &str)] = &[
            ("+14255550100", "+14255550100"),
            ("+1 (425) 555-0100", "+14255550100"),
            ("+1.425.555.0100", "+14255550100"),
            ("  +44 20 7946 0958 ", "+442079460958"),
            ("+49 30 123456", "+4930123456"),
            ("+12345678", "+12345678"),
            ("+123456789012345", "+123456789012345"),
        ];
        for (input, expected) in cases {
            assert_eq!(PhoneNumber::parse(input).expect(input).as_str(), *expected);
        }
    }

    #[test]
    fn malformed_numbers_are_rejected() {
        let cases: &[(&str, ValidationCode)] = &[
            ("", ValidationCode::Required),
            ("   ", ValidationCode::Required),
            ("14255550100", ValidationCode::PhoneInvalid),
            ("0014255550100", ValidationCode::PhoneInvalid),
            ("+04255550100", ValidationCode::PhoneInvalid),
            ("+1234567", ValidationCode::PhoneInvalid),
            ("+1234567890123456", ValidationCode::PhoneInvalid),
            ("+1 425 555 0100 ext 12", ValidationCode::PhoneInvalid),
            ("+1-425-CALL-NOW", ValidationCode::PhoneInvalid),
            ("++14255550100", ValidationCode::PhoneInvalid),
            ("+1 425+555 0100", ValidationCode::PhoneInvalid),
            ("+١٤٢٥٥٥٥٠١٠٠", ValidationCode::PhoneInvalid),
            ("＋14255550100", ValidationCode::PhoneInvalid),
            ("+1/425/5550100", ValidationCode::PhoneInvalid),
            ("+", ValidationCode::PhoneInvalid),
            ("+49 (0)30 123456", ValidationCode::PhoneInvalid),
            ("+1425555\u{0}0100", ValidationCode::ControlCharacter),
            ("+1425555\n0100", ValidationCode::ControlCharacter),
            ("+1425\u{202E}5550100", ValidationCode::ControlCharacter),
        ];
        for (input, code) in cases {
            let error = PhoneNumber::parse(input).expect_err(input);
            assert_eq!(error.code, *code, "input {input:?}: {}", error.message);
        }
        let long = format!("+1{}", " ".repeat(100));
        assert_eq!(
            PhoneNumber::parse(&long).expect_err("long").code,
            ValidationCode::PhoneInvalid
        );
    }

    #[test]
    fn serde_round_trips_and_rejects_invalid_stored_values() {
        let phone = PhoneNumber::parse("+1 (425) 555-0100").expect("valid");
        let json = serde_json::to_string(&phone).expect("serialises");
        assert_eq!(json, "\"+14255550100\"");
        let back: PhoneNumber = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, phone);
        assert!(serde_json::from_str::<PhoneNumber>("\"555-0100\"").is_err());
    }
}
