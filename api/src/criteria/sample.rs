//! Parsing the uploaded sample with mail-parser and extracting, into owned data, everything the
//! checks read from it: header facts, the From mailboxes, forwarding signals and the card markup.

use mail_parser::{Address, HeaderValue, Message, MessageParser, MessagePart, PartType};
use serde_json::Value;

use super::headers::{
    FORWARD_MARKERS, SpfFinding, forward_prefix, is_bulk_precedence, is_forwarding_header,
    parse_spf, quote_for_evidence, unfold,
};
use super::html::{ADAPTIVE_CARD_TYPE, find_card_script};
use super::{MarkupKind, SampleError};

/// Deepest MIME nesting accepted (multipart levels plus attached messages). mail-parser itself
/// has no limit for multiparts (it nests with an explicit stack, not recursion) and only limits
/// *encoded* attached messages to 3 levels, so the limit is ours.
pub const MAX_MIME_DEPTH: usize = 10;

/// A header field of the top-level header section, unfolded.
struct HeaderField {
    /// The field name as written.
    name: String,
    /// The unfolded, trimmed raw value (invalid UTF-8 replaced).
    value: String,
}

/// What the markup search found.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkupFinding {
    /// The `markup` fact.
    pub kind: MarkupKind,
    /// What was found and where, for the evidence.
    pub detail: String,
    /// The parsed card when `kind` is adaptive or messagecard.
    pub card: Option<Value>,
}

/// Everything the checks need from the sample, owned (nothing borrows the parsed message).
#[derive(Debug, Clone, PartialEq)]
pub struct Inspected {
    /// Unfolded raw value of the (first) From field.
    pub from_header: String,
    /// Every mailbox address in the From field(s), as parsed.
    pub from_mailboxes: Vec<String>,
    /// How many From fields the header section has (RFC 5322 allows exactly one).
    pub from_fields: usize,
    /// True when a From field uses group syntax (`name: member, …;`, `undisclosed:;`), which
    /// lists recipients rather than naming the author's mailbox.
    pub from_group: bool,
    /// The decoded subject.
    pub subject: Option<String>,
    /// The topmost Authentication-Results value.
    pub auth_results: Option<String>,
    /// SPF as read from it.
    pub spf: SpfFinding,
    /// Evidence lines for each forwarding signal found.
    pub forwarding_signals: Vec<String>,
    /// Bulk `Precedence:` values found.
    pub bulk_precedence: Vec<String>,
    /// The List-Unsubscribe value, if any.
    pub list_unsubscribe: Option<String>,
    /// The card markup.
    pub markup: MarkupFinding,
}

/// Depth of MIME nesting: each multipart or attached message adds a level. Walked with an
/// explicit stack; a child id is always greater than its parent's in mail-parser's part list,
/// which the walk enforces so that it terminates whatever the input.
fn mime_depth(message: &Message<'_>) -> usize {
    let mut deepest = 0;
    let mut stack: Vec<(&Message<'_>, u32, usize)> = vec![(message, 0, 0)];
    while let Some((msg, id, depth)) = stack.pop() {
        let Some(part) = msg.parts.get(id as usize) else {
            continue;
        };
        match &part.body {
            PartType::Multipart(children) => {
                deepest = deepest.max(depth + 1);
                stack.extend(
                    children
                        .iter()
                        .filter(|&&child| child > id)
                        .map(|&child| (msg, child, depth + 1)),
                );
            }
            PartType::Message(inner) => {
                deepest = deepest.max(depth + 1);
                stack.push((inner, 0, depth + 1));
            }
            _ => {}
        }
        if deepest > MAX_MIME_DEPTH {
            break;
        }
    }
    deepest
}

/// The mailbox addresses of an address header, and whether it uses group syntax anywhere
/// (mail-parser gives a plain list beside a group as a nameless group).
fn mailboxes(value: &HeaderValue<'_>) -> (Vec<String>, bool) {
    let address_of = |addr: &mail_parser::Addr<'_>| {
        addr.address
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
    };
    match value {
        HeaderValue::Address(Address::List(list)) => {
            (list.iter().filter_map(address_of).collect(), false)
        }
        HeaderValue::Address(Address::Group(groups)) => (
            groups
                .iter()
                .flat_map(|group| group.addresses.iter())
                .filter_map(address_of)
                .collect(),
            groups.iter().any(|group| group.name.is_some()),
        ),
        _ => (Vec::new(), false),
    }
}

/// Parses the sample and extracts the facts. Errors are the sample-level rejections.
pub fn inspect(raw: &[u8]) -> Result<Inspected, SampleError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| SampleError::NotAMessage {
            detail: "no header section was found".to_owned(),
        })?;
    let root = message
        .parts
        .first()
        .filter(|root| !root.headers.is_empty())
        .ok_or_else(|| SampleError::NotAMessage {
            detail: "no header section was found".to_owned(),
        })?;

    let headers: Vec<HeaderField> = root
        .headers
        .iter()
        .map(|header| HeaderField {
            name: header.name.as_str().to_owned(),
            value: raw
                .get(header.offset_start as usize..header.offset_end as usize)
                .map(unfold)
                .unwrap_or_default(),
        })
        .collect();

    let from_fields: Vec<usize> = root
        .headers
        .iter()
        .enumerate()
        .filter(|(_, h)| h.name.as_str().eq_ignore_ascii_case("From"))
        .map(|(index, _)| index)
        .collect();
    let mut from_mailboxes: Vec<String> = Vec::new();
    let mut from_group = false;
    for header in from_fields
        .iter()
        .filter_map(|&index| root.headers.get(index))
    {
        let (found, group) = mailboxes(&header.value);
        from_mailboxes.extend(found);
        from_group |= group;
    }
    // A group without members (`undisclosed:;`) still gets a report, whose SENDER_REGISTERED
    // check says why it fails; a From with nothing readable at all is not a message.
    if from_mailboxes.is_empty() && !from_group {
        return Err(SampleError::NotAMessage {
            detail: if from_fields.is_empty() {
                "it has no From: header".to_owned()
            } else {
                "its From: header holds no address".to_owned()
            },
        });
    }
    let from_header = from_fields
        .first()
        .and_then(|&index| headers.get(index))
        .map(|h| h.value.clone())
        .unwrap_or_default();

    let depth = mime_depth(&message);
    if depth > MAX_MIME_DEPTH {
        return Err(SampleError::TooDeeplyNested {
            limit: MAX_MIME_DEPTH,
        });
    }

    let subject = root.headers.iter().find_map(|h| {
        if h.name.as_str().eq_ignore_ascii_case("Subject") {
            match &h.value {
                HeaderValue::Text(text) => Some(text.trim().to_owned()),
                HeaderValue::TextList(list) => Some(list.join(" ").trim().to_owned()),
                _ => Some(String::new()),
            }
        } else {
            None
        }
    });

    let field = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.clone())
    };
    let auth_results = field("Authentication-Results");
    let spf = auth_results
        .as_deref()
        .map_or_else(SpfFinding::none, parse_spf);
    let list_unsubscribe = field("List-Unsubscribe");
    let bulk_precedence = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("Precedence") && is_bulk_precedence(&h.value))
        .map(|h| h.value.clone())
        .collect();

    let mut forwarding_signals = Vec::new();
    if let Some(subject) = &subject
        && let Some(prefix) = forward_prefix(subject)
    {
        forwarding_signals.push(format!(
            "Subject: \"{}\" starts with the forward prefix \"{}\"",
            quote_for_evidence(subject),
            prefix
        ));
    }
    for h in headers.iter().filter(|h| is_forwarding_header(&h.name)) {
        forwarding_signals.push(format!(
            "Header {}: \"{}\" is added only when a message is forwarded or resent",
            h.name,
            quote_for_evidence(&h.value)
        ));
    }
    // Only the top-level message's own parts: parts of an attached message/rfc822 are not
    // rendered as this message's body.
    for (index, part) in message.parts.iter().enumerate() {
        let text = match &part.body {
            PartType::Text(text) | PartType::Html(text) => text,
            _ => continue,
        };
        for marker in FORWARD_MARKERS {
            if text.contains(marker) {
                forwarding_signals.push(format!(
                    "MIME part {index} contains the forwarded-message marker \"{marker}\""
                ));
            }
        }
    }

    let markup = find_markup(&message);

    Ok(Inspected {
        from_header,
        from_mailboxes,
        from_fields: from_fields.len(),
        from_group,
        subject,
        auth_results,
        spf,
        forwarding_signals,
        bulk_precedence,
        list_unsubscribe,
        markup,
    })
}

/// Looks through the decoded `text/html` parts, in order, for the first card script.
fn find_markup(message: &Message<'_>) -> MarkupFinding {
    let mut html_parts = 0;
    for (index, part) in message.parts.iter().enumerate() {
        let PartType::Html(html) = &part.body else {
            continue;
        };
        html_parts += 1;
        let Some(script) = find_card_script(html) else {
            continue;
        };
        let is_adaptive = script.script_type == ADAPTIVE_CARD_TYPE;
        let expected = if is_adaptive {
            "\"type\": \"AdaptiveCard\""
        } else {
            "\"@type\": \"MessageCard\""
        };
        let location = format!(
            "<script type=\"{}\"> in the text/html part (MIME part {index})",
            script.script_type
        );
        // serde_json refuses nesting deeper than 128 levels with an error, so a hostile card
        // cannot exhaust the stack here.
        let finding = match serde_json::from_str::<Value>(script.content) {
            Err(err) => MarkupFinding {
                kind: MarkupKind::Invalid,
                detail: format!(
                    "{location} is not valid JSON: {err} (line/column counted from the start of the script)"
                ),
                card: None,
            },
            Ok(card) => {
                let key = if is_adaptive { "type" } else { "@type" };
                let wanted = if is_adaptive {
                    "AdaptiveCard"
                } else {
                    "MessageCard"
                };
                if card.get(key).and_then(Value::as_str) == Some(wanted) {
                    MarkupFinding {
                        kind: if is_adaptive {
                            MarkupKind::Adaptive
                        } else {
                            MarkupKind::MessageCard
                        },
                        detail: format!("{location} holds a valid card ({expected})"),
                        card: Some(card),
                    }
                } else {
                    MarkupFinding {
                        kind: MarkupKind::Invalid,
                        detail: format!("{location} is JSON but not an object with {expected}"),
                        card: None,
                    }
                }
            }
        };
        return finding;
    }
    let mut detail = if html_parts == 0 {
        "The message has no text/html part, so it carries no card".to_owned()
    } else if html_parts == 1 {
        "The text/html part has no <script type=\"application/adaptivecard+json\"> or <script type=\"application/ld+json\">".to_owned()
    } else {
        format!(
            "None of the {html_parts} text/html parts has a <script type=\"application/adaptivecard+json\"> or <script type=\"application/ld+json\">"
        )
    };
    // mail-parser turns a part it cannot decode (cut off before its closing boundary, broken
    // base64) into plain text; say so, since that is what the sender must fix.
    for (index, part) in message.parts.iter().enumerate() {
        if part.is_encoding_problem && declares_html(part) {
            detail.push_str(&format!(
                "; MIME part {index} is declared text/html but could not be decoded (cut off before its closing boundary, or a broken transfer encoding), so it was not searched"
            ));
        }
    }
    MarkupFinding {
        kind: MarkupKind::None,
        detail,
        card: None,
    }
}

fn declares_html(part: &MessagePart<'_>) -> bool {
    part.headers.iter().any(|h| match &h.value {
        HeaderValue::ContentType(ct) => {
            h.name.as_str().eq_ignore_ascii_case("Content-Type")
                && ct.ctype().eq_ignore_ascii_case("text")
                && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("html"))
        }
        _ => false,
    })
}
