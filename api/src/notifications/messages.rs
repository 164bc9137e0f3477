//! The texts of decision e-mails: plain text that says what was decided and what to do next.

use std::fmt::Write as _;

use crate::{
    events::EventKind,
    registration::{Scope, SubmissionStatus},
};

/// Longest provider name shown in a subject line, in characters; the body has it in full.
const SUBJECT_NAME_CHARS: usize = 80;

/// Prose is wrapped at this width, so the message stays readable as sent (7-bit, no
/// quoted-printable soft breaks) when everything in it is ASCII.
const LINE_CHARS: usize = 76;

/// A reviewer's decision on a submission, as announced to the provider's contact address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Approved,
    Rejected,
    ChangesRequested,
    Revoked,
}

impl Decision {
    /// The outbox `kind` of the message announcing this decision: the name of its event kind.
    pub fn kind(self) -> &'static str {
        self.event_kind().as_str()
    }

    /// The event recorded with this decision.
    pub fn event_kind(self) -> EventKind {
        match self {
            Self::Approved => EventKind::Approved,
            Self::Rejected => EventKind::Rejected,
            Self::ChangesRequested => EventKind::ChangesRequested,
            Self::Revoked => EventKind::Revoked,
        }
    }

    /// The status the submission has after the decision.
    pub fn new_status(self) -> SubmissionStatus {
        match self {
            Self::Approved => SubmissionStatus::Approved,
            Self::Rejected => SubmissionStatus::Rejected,
            Self::ChangesRequested => SubmissionStatus::ChangesRequested,
            Self::Revoked => SubmissionStatus::Revoked,
        }
    }
}

/// The subject and plain-text body of the e-mail announcing `decision` on submission
/// `submission_number` of the provider named `provider_name`, for `scope` (a [`Scope`] code such
/// as `GLOBAL`; anything else is shown as given).
///
/// `reason` is the reviewer's text meant for the owner (never an internal note); `fields` the
/// paths of the fields to change when changes are requested. Only what is passed in is shown,
/// so the caller decides that nothing secret goes out.
pub fn decision_message(
    decision: Decision,
    provider_name: &str,
    submission_number: i32,
    scope: &str,
    reason: Option<&str>,
    fields: &[String],
) -> (String, String) {
    let name = one_line(provider_name);
    let scope = scope_label(scope);
    let reason = reason.map(multi_line).filter(|r| !r.is_empty());
    let number = submission_number;

    let subject_name = shorten(&name, SUBJECT_NAME_CHARS);
    let subject = match decision {
        Decision::Approved => format!("{subject_name}: submission #{number} approved"),
        Decision::Rejected => format!("{subject_name}: submission #{number} rejected"),
        Decision::ChangesRequested => {
            format!("{subject_name}: changes requested on submission #{number}")
        }
        Decision::Revoked => format!("{subject_name}: approval of submission #{number} revoked"),
    };

    let mut body = String::from("Hello,\n\n");
    let headline = match decision {
        Decision::Approved => format!(
            "Submission #{number} of your provider \"{name}\" has been approved for the {scope} \
             scope."
        ),
        Decision::Rejected => {
            format!("Submission #{number} of your provider \"{name}\" has been rejected.")
        }
        Decision::ChangesRequested => format!(
            "A reviewer asked for changes to submission #{number} of your provider \"{name}\" \
             before deciding on it."
        ),
        Decision::Revoked => format!(
            "The approval of submission #{number} of your provider \"{name}\" has been revoked: \
             the registration is no longer in force for the {scope} scope."
        ),
    };
    push_paragraph(&mut body, &headline, "");
    let _ = write!(
        body,
        "  Provider:    {name}\n  Submission:  #{number}\n  Scope:       {scope}\n  \
         New status:  {}\n\n",
        decision.new_status().as_str()
    );

    let fields: Vec<String> = fields
        .iter()
        .map(|f| one_line(f))
        .filter(|f| !f.is_empty())
        .collect();
    if decision == Decision::ChangesRequested {
        body.push_str("Fields to change:\n");
        if fields.is_empty() {
            body.push_str("  (none named; see the reviewer's comments)\n");
        }
        for field in &fields {
            let _ = writeln!(body, "  - {field}");
        }
        body.push('\n');
    }

    let reason_title = match decision {
        Decision::Approved => "Note from the reviewer:",
        Decision::ChangesRequested => "Reviewer's comments:",
        Decision::Rejected | Decision::Revoked => "Reason given by the reviewer:",
    };
    match &reason {
        Some(reason) => {
            body.push_str(reason_title);
            body.push('\n');
            for line in reason.lines() {
                if line.trim().is_empty() {
                    body.push('\n');
                } else {
                    push_wrapped(&mut body, line, "  ");
                }
            }
            body.push('\n');
        }
        None if decision != Decision::Approved => {
            body.push_str(reason_title);
            body.push_str("\n  (none given)\n\n");
        }
        None => {}
    }

    let next_step = match decision {
        Decision::Approved => {
            "Nothing more is needed from you: the registration is now in force for this scope."
        }
        Decision::Rejected => {
            "This submission is closed. To try again, address the reason above in your \
             provider's draft in the dashboard, then submit it again."
        }
        Decision::ChangesRequested if fields.is_empty() => {
            "What to do: make the changes the reviewer describes in your provider's draft in the \
             dashboard, then submit it again. Your new submission keeps its place in the review \
             queue."
        }
        Decision::ChangesRequested => {
            "What to do: edit these fields in your provider's draft in the dashboard, then submit \
             it again. Your new submission keeps its place in the review queue."
        }
        Decision::Revoked => {
            "To be approved again, address the reason above in your provider's draft in the \
             dashboard, then submit it again."
        }
    };
    push_paragraph(&mut body, next_step, "");
    body.push_str("-- \nActionable dashboard\n");
    push_wrapped(
        &mut body,
        "You receive this e-mail because this address is the contact address of the provider's \
         registration.",
        "",
    );
    (subject, body)
}

/// Appends `text` wrapped to [`LINE_CHARS`], each line starting with `indent`, and a blank line.
fn push_paragraph(out: &mut String, text: &str, indent: &str) {
    push_wrapped(out, text, indent);
    out.push('\n');
}

/// Appends `text` wrapped at spaces to [`LINE_CHARS`] (a longer word, such as a URL, gets a line
/// of its own), each line starting with `indent` and ending with `\n`.
fn push_wrapped(out: &mut String, text: &str, indent: &str) {
    let mut line = String::from(indent);
    let mut line_chars = indent.chars().count();
    let mut empty = true;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let word_chars = word.chars().count();
        if !empty && line_chars + 1 + word_chars > LINE_CHARS {
            out.push_str(&line);
            out.push('\n');
            line = String::from(indent);
            line_chars = indent.chars().count();
            empty = true;
        }
        if !empty {
            line.push(' ');
            line_chars += 1;
        }
        line.push_str(word);
        line_chars += word_chars;
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
}

/// The words for a scope code, e.g. `My mailbox` for `MY_MAILBOX`.
fn scope_label(scope: &str) -> String {
    match Scope::parse(scope.trim()) {
        Some(Scope::MyMailbox) => "My mailbox".into(),
        Some(Scope::Organization) => "Organization".into(),
        Some(Scope::Global) => "Global".into(),
        None => one_line(scope),
    }
}

/// Text for one line (a subject, a list item): control characters and bidi overrides become
/// spaces, runs of spaces collapse, ends are trimmed. A line break in a subject would otherwise
/// start a new header.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if is_unsafe(c) { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Multi-line text (the reviewer's reason): line breaks kept as `\n`, tabs as is, every other
/// control character or bidi override dropped, trailing spaces and blank edges trimmed.
fn multi_line(text: &str) -> String {
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<String> = normalized
        .split('\n')
        .map(|line| {
            line.chars()
                .filter(|&c| c == '\t' || !is_unsafe(c))
                .collect::<String>()
                .trim_end()
                .to_owned()
        })
        .collect();
    lines.join("\n").trim_matches('\n').to_owned()
}

fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// At most `max` characters, with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Decision; 4] = [
        Decision::Approved,
        Decision::Rejected,
        Decision::ChangesRequested,
        Decision::Revoked,
    ];

    /// The body with line breaks and indentation folded, for phrases that may be wrapped.
    fn flat(body: &str) -> String {
        body.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn message(decision: Decision, reason: Option<&str>, fields: &[&str]) -> (String, String) {
        let fields: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
        decision_message(decision, "Contoso Alerts", 3, "GLOBAL", reason, &fields)
    }

    #[test]
    fn every_decision_names_the_provider_submission_scope_and_new_status() {
        for (decision, status, word) in [
            (Decision::Approved, "APPROVED", "approved"),
            (Decision::Rejected, "REJECTED", "rejected"),
            (
                Decision::ChangesRequested,
                "CHANGES_REQUESTED",
                "changes requested",
            ),
            (Decision::Revoked, "REVOKED", "revoked"),
        ] {
            let (subject, body) = message(decision, Some("Because."), &[]);
            assert!(subject.contains("Contoso Alerts"), "{subject}");
            assert!(subject.contains("#3"), "{subject}");
            assert!(subject.contains(word), "{subject}");
            assert!(flat(&body).contains("\"Contoso Alerts\""), "{body}");
            assert!(body.contains("Submission:  #3"), "{body}");
            assert!(body.contains("Scope:       Global"), "{body}");
            assert!(body.contains(&format!("New status:  {status}")), "{body}");
            assert!(body.contains("  Because."), "{body}");
        }
    }

    #[test]
    fn kinds_are_the_event_kind_names_and_distinct() {
        let kinds: Vec<&str> = ALL.iter().map(|d| d.kind()).collect();
        assert_eq!(
            kinds,
            ["APPROVED", "REJECTED", "CHANGES_REQUESTED", "REVOKED"]
        );
        for decision in ALL {
            assert_eq!(decision.kind(), decision.new_status().as_str());
        }
    }

    #[test]
    fn changes_requested_lists_each_field_and_says_what_to_do() {
        let (_, body) = message(
            Decision::ChangesRequested,
            Some("The support URL answers 404.\nPlease fix it."),
            &["publisherInfo.supportUrl", "contactInfo.phone"],
        );
        assert!(
            body.contains(
                "Fields to change:\n  - publisherInfo.supportUrl\n  - contactInfo.phone\n"
            ),
            "{body}"
        );
        assert!(
            body.contains(
                "Reviewer's comments:\n  The support URL answers 404.\n  Please fix it.\n"
            ),
            "{body}"
        );
        assert!(flat(&body).contains("then submit it again"), "{body}");
        assert!(flat(&body).contains("keeps its place"), "{body}");
    }

    #[test]
    fn changes_requested_without_fields_points_to_the_comments() {
        let (_, body) = message(Decision::ChangesRequested, Some("See the sample."), &[]);
        assert!(body.contains("Fields to change:\n  (none named"), "{body}");
        assert!(
            flat(&body).contains("make the changes the reviewer describes"),
            "{body}"
        );
    }

    #[test]
    fn a_missing_reason_is_said_plainly_except_on_approval() {
        let (_, body) = message(Decision::Rejected, None, &[]);
        assert!(
            body.contains("Reason given by the reviewer:\n  (none given)"),
            "{body}"
        );
        let (_, body) = message(Decision::Revoked, Some("   "), &[]);
        assert!(body.contains("(none given)"), "{body}");
        let (_, body) = message(Decision::Approved, None, &[]);
        assert!(!body.contains("reviewer:"), "{body}");
        assert!(!body.contains("(none given)"), "{body}");
    }

    #[test]
    fn scopes_are_shown_in_words_and_unknown_ones_as_given() {
        let (_, body) = decision_message(Decision::Approved, "P", 1, "MY_MAILBOX", None, &[]);
        assert!(flat(&body).contains("for the My mailbox scope"), "{body}");
        let (_, body) = decision_message(Decision::Approved, "P", 1, "ORGANIZATION", None, &[]);
        assert!(body.contains("Scope:       Organization"), "{body}");
        let (_, body) = decision_message(Decision::Approved, "P", 1, "TEAM", None, &[]);
        assert!(body.contains("Scope:       TEAM"), "{body}");
    }

    #[test]
    fn line_breaks_in_a_name_cannot_add_headers_and_long_names_are_cut_in_the_subject() {
        let (subject, body) = decision_message(
            Decision::Rejected,
            "Evil\r\nBcc: victim@example.com\u{202E}",
            2,
            "GLOBAL",
            Some("No.\u{1b}[31m"),
            &["a\nb".to_owned()],
        );
        assert!(
            !subject.contains('\n') && !subject.contains('\r'),
            "{subject:?}"
        );
        assert!(
            subject.starts_with("Evil Bcc: victim@example.com:"),
            "{subject}"
        );
        assert!(!body.contains('\r') && !body.contains('\u{1b}'), "{body:?}");
        assert!(!body.contains('\u{202E}'), "{body:?}");

        let long = "x".repeat(300);
        let (subject, body) = decision_message(Decision::Approved, &long, 1, "GLOBAL", None, &[]);
        assert!(subject.chars().count() < 120, "{subject}");
        assert!(subject.contains('…'), "{subject}");
        assert!(body.contains(&long), "the body has the full name");
    }

    #[test]
    fn prose_is_wrapped_so_the_message_stays_readable_as_sent() {
        let reason = format!(
            "{} https://contoso.example/{}",
            "word ".repeat(40),
            "a".repeat(90)
        );
        for decision in ALL {
            let (_, body) = message(decision, Some(&reason), &["contactInfo.email"]);
            for line in body.lines() {
                assert!(
                    line.chars().count() <= LINE_CHARS || !line.trim().contains(' '),
                    "{line:?} in {body}"
                );
            }
            assert!(body.contains(&format!("\n  https://contoso.example/{}\n", "a".repeat(90))));
        }
    }

    #[test]
    fn multi_line_reasons_keep_their_paragraphs() {
        let (_, body) = message(
            Decision::Revoked,
            Some("\r\nFirst paragraph.\r\n\r\nSecond paragraph.  \r\n"),
            &[],
        );
        assert!(
            body.contains(
                "Reason given by the reviewer:\n  First paragraph.\n\n  Second paragraph.\n\n"
            ),
            "{body}"
        );
    }
}
