//! `BoundedText`: free text (names, descriptions) trimmed, non-empty, length-limited and free
//! of control characters and bidi overrides.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{FieldError, ValidationCode, reject_control_chars};

/// Length limit applied when a stored value is deserialised, where the field's own limit is
/// not known (see [`BoundedText`]).
const DESERIALIZE_MAX_CHARS: usize = 100_000;

/// Free text with surrounding whitespace trimmed: not empty (`REQUIRED`), at most `max_chars`
/// characters (Unicode scalar values, counted after trimming; `TOO_LONG`), and without control
/// characters or bidi overrides (U+202A..U+202E, U+2066..U+2069), except `\n` and `\t` in
/// multi-line text (`CONTROL_CHARACTER`). CRLF line breaks become LF; a lone CR is refused.
///
/// Deserialisation cannot know the field's limits, so it re-checks everything else (trimmed,
/// non-empty, no forbidden characters; multi-line allowed; at most 100 000 characters);
/// code that must re-enforce a field's exact limits parses the stored string again.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BoundedText(String);

impl BoundedText {
    /// Parses text for a field allowing at most `max_chars` characters, on one line unless
    /// `multiline`.
    pub fn parse(input: &str, max_chars: usize, multiline: bool) -> Result<Self, FieldError> {
        let normalized = input.replace("\r\n", "\n");
        let text = normalized.trim();
        if text.is_empty() {
            return Err(FieldError::new(
                ValidationCode::Required,
                "This field is required.",
            ));
        }
        reject_control_chars(text, "The text", multiline)?;
        let chars = text.chars().count();
        if chars > max_chars {
            return Err(FieldError::new(
                ValidationCode::TooLong,
                format!("The text is {chars} characters long; at most {max_chars} are allowed."),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The trimmed, normalised text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Unwraps into the text.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for BoundedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for BoundedText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BoundedText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text, DESERIALIZE_MAX_CHARS, true).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_normalised() {
        let cases: &[(&str, usize, bool, &str)] = &[
            ("Contoso", 10, false, "Contoso"),
            ("  Contoso Ltd \t", 20, false, "Contoso Ltd"),
            ("\u{3000}全角スペース\u{3000}", 20, false, "全角スペース"),
            ("line one\r\nline two", 40, true, "line one\nline two"),
            ("col\tumn\n\nnext", 40, true, "col\tumn\n\nnext"),
            ("\r\n text \r\n", 40, true, "text"),
            ("Bücher", 6, false, "Bücher"),
            ("👍👍👍", 3, false, "👍👍👍"),
            ("trailing next-line\u{85}", 40, false, "trailing next-line"),
        ];
        for (input, max, multiline, expected) in cases {
            let text = BoundedText::parse(input, *max, *multiline).expect(input);
            assert_eq!(text.as_str(), *expected, "input {input:?}");
        }
    }

    #[test]
    fn bad_text_gets_specific_codes() {
        let cases: &[(&str, usize, bool, ValidationCode)] = &[
            ("", 10, false, ValidationCode::Required),
            ("   ", 10, false, ValidationCode::Required),
            ("\r\n\t ", 10, true, ValidationCode::Required),
            ("elevenchars", 10, false, ValidationCode::TooLong),
            ("👍👍👍👍", 3, false, ValidationCode::TooLong),
            ("two\nlines", 40, false, ValidationCode::ControlCharacter),
            ("tab\there", 40, false, ValidationCode::ControlCharacter),
            ("lone\rcr", 40, true, ValidationCode::ControlCharacter),
            ("nul\0byte", 40, true, ValidationCode::ControlCharacter),
            ("bell\u{7}", 40, true, ValidationCode::ControlCharacter),
            ("del\u{7F}", 40, true, ValidationCode::ControlCharacter),
            ("next\u{85}line", 40, true, ValidationCode::ControlCharacter),
            ("abc\u{202E}fed", 40, true, ValidationCode::ControlCharacter),
            ("\u{202A}embed", 40, false, ValidationCode::ControlCharacter),
            (
                "isolate\u{2066}x\u{2069}",
                40,
                false,
                ValidationCode::ControlCharacter,
            ),
            (
                "first\u{2068}strong",
                40,
                false,
                ValidationCode::ControlCharacter,
            ),
        ];
        for (input, max, multiline, code) in cases {
            let error = BoundedText::parse(input, *max, *multiline).expect_err(input);
            assert_eq!(error.code, *code, "input {input:?}: {}", error.message);
        }
    }

    #[test]
    fn length_is_checked_after_trimming() {
        assert!(BoundedText::parse("   ten chars!   ", 11, false).is_ok());
    }

    #[test]
    fn serde_round_trips_and_rejects_invalid_stored_values() {
        let text = BoundedText::parse(" Line\r\nTwo ", 20, true).expect("valid");
        let json = serde_json::to_string(&text).expect("serialises");
        assert_eq!(json, "\"Line\\nTwo\"");
        let back: BoundedText = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, text);
        for stored in ["\"\"", "\"a\\u0000b\"", "\"a\\u202eb\""] {
            assert!(
                serde_json::from_str::<BoundedText>(stored).is_err(),
                "{stored} must not load"
            );
        }
    }
}
