//! Reading header fields the checks rely on: unfolding raw values, the SPF result and
//! `smtp.mailfrom` of an `Authentication-Results` field, and the forwarding / bulk-mail signals
//! of the subject and header names.

use super::SpfStatus;
use super::domains::to_a_label;

/// The SPF part of one `Authentication-Results` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfFinding {
    /// `pass`, `fail` (any result other than pass/none) or `none` (also when there is no
    /// `spf=` result).
    pub status: SpfStatus,
    /// The result word as written, lower-cased (`softfail`, `temperror`, ...).
    pub result: Option<String>,
    /// The `smtp.mailfrom` property as written (an address or a domain).
    pub mailfrom: Option<String>,
    /// The domain of `smtp.mailfrom` (after `@` if it is an address) as a lower-case A-label.
    pub domain: Option<String>,
}

impl SpfFinding {
    /// No SPF result at all.
    pub fn none() -> Self {
        Self {
            status: SpfStatus::None,
            result: None,
            mailfrom: None,
            domain: None,
        }
    }
}

/// Unfolds a raw header value for display and matching (a line break and the whitespace after
/// it become one space), replaces invalid UTF-8, and trims it.
pub fn unfold(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    // After a line break, the break and the whitespace run that follows become one space.
    let mut folding = false;
    for c in text.chars() {
        if c == '\r' || c == '\n' {
            folding = true;
            continue;
        }
        if folding {
            if c.is_whitespace() {
                continue;
            }
            out.push(' ');
            folding = false;
        }
        out.push(c);
    }
    out.trim().to_owned()
}

/// Shortens a quoted header value for evidence, on a character boundary.
pub fn quote_for_evidence(value: &str) -> String {
    const MAX_CHARS: usize = 300;
    let value = value.trim();
    match value.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

/// Replaces RFC 5322 comments (nested parentheses, backslash escapes) by a space, leaving
/// quoted strings alone.
fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut depth: u32 = 0;
    let mut in_quote = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if depth > 0 {
            match c {
                '\\' => {
                    chars.next();
                }
                '(' => depth = depth.saturating_add(1),
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        out.push(' ');
                    }
                }
                _ => {}
            }
        } else if in_quote {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                }
                '"' => in_quote = false,
                _ => {}
            }
        } else {
            match c {
                '(' => depth = 1,
                '"' => {
                    in_quote = true;
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
    }
    out
}

/// Splits on `;` outside quoted strings, and splits each piece into whitespace-separated
/// tokens with any whitespace around `=` removed (`smtp.mailfrom = x` is one token).
fn resinfo_tokens(value: &str) -> Vec<Vec<String>> {
    let mut segments = Vec::new();
    let mut tokens: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_quote = false;
    let mut glue = false; // the token continues after `=`
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quote {
            current.push(c);
            if c == '\\' {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            } else if c == '"' {
                in_quote = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_quote = true;
                current.push(c);
                glue = false;
            }
            ';' => {
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
                segments.push(std::mem::take(&mut tokens));
                glue = false;
            }
            '=' => {
                if current.is_empty()
                    && let Some(previous) = tokens.pop()
                {
                    current = previous;
                }
                current.push('=');
                glue = true;
            }
            c if c.is_whitespace() => {
                if glue {
                    continue;
                }
                if !current.is_empty() {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            c => {
                current.push(c);
                glue = false;
            }
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    segments.push(tokens);
    segments
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// Reads the first `spf=` result of an `Authentication-Results` value, with or without an
/// authserv-id (Exchange Online writes none), and its `smtp.mailfrom` property.
pub fn parse_spf(value: &str) -> SpfFinding {
    let cleaned = strip_comments(value);
    for tokens in resinfo_tokens(&cleaned) {
        let Some((method, result)) = tokens.first().and_then(|first| first.split_once('=')) else {
            // The authserv-id (and optional version), or an empty piece.
            continue;
        };
        let method = method.split('/').next().unwrap_or(method);
        if !method.eq_ignore_ascii_case("spf") {
            continue;
        }
        let result = unquote(result).to_ascii_lowercase();
        let status = match result.as_str() {
            "pass" => SpfStatus::Pass,
            "none" => SpfStatus::None,
            _ => SpfStatus::Fail,
        };
        let mailfrom = tokens.iter().skip(1).find_map(|token| {
            let (property, value) = token.split_once('=')?;
            property
                .eq_ignore_ascii_case("smtp.mailfrom")
                .then(|| unquote(value).to_owned())
        });
        let domain = mailfrom.as_deref().and_then(|m| {
            let domain = m.rsplit_once('@').map_or(m, |(_, d)| d);
            to_a_label(domain.trim_end_matches('>'))
        });
        return SpfFinding {
            status,
            result: Some(result),
            mailfrom,
            domain,
        };
    }
    SpfFinding::none()
}

/// Subject prefixes that mail clients add when forwarding (English, German, French, Spanish,
/// Dutch), compared ASCII case-insensitively after leading whitespace.
const FORWARD_PREFIXES: &[&str] = &["fwd:", "fw:", "wg:", "tr:", "rv:", "doorst:"];

/// Separator lines that clients put above a forwarded message's quoted body.
pub const FORWARD_MARKERS: &[&str] = &[
    "---------- Forwarded message ---------",
    "-----Original Message-----",
    "Begin forwarded message:",
];

/// The forward prefix the subject starts with, as written, if any.
pub fn forward_prefix(subject: &str) -> Option<&str> {
    let subject = subject.trim_start();
    FORWARD_PREFIXES.iter().find_map(|prefix| {
        subject
            .get(..prefix.len())
            .filter(|start| start.eq_ignore_ascii_case(prefix))
    })
}

/// True for header names that only a forwarding or resending hop adds.
pub fn is_forwarding_header(name: &str) -> bool {
    let lower = name.trim().to_ascii_lowercase();
    lower.starts_with("resent-") || lower.starts_with("x-forwarded-")
}

/// True for a `Precedence:` value that marks bulk mail.
pub fn is_bulk_precedence(value: &str) -> bool {
    let value = value.trim();
    ["bulk", "list", "junk"]
        .iter()
        .any(|bulk| value.eq_ignore_ascii_case(bulk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exchange_online_layout_without_authserv_id() {
        let value = "spf=pass (sender IP is 203.0.113.25) smtp.mailfrom=contoso.com; dkim=pass (signature was verified) header.d=contoso.com;dmarc=pass action=none header.from=contoso.com;compauth=pass reason=100";
        let spf = parse_spf(value);
        assert_eq!(spf.status, SpfStatus::Pass);
        assert_eq!(spf.domain.as_deref(), Some("contoso.com"));
    }

    #[test]
    fn rfc8601_layout_with_authserv_id_and_address() {
        let value = "mx.example.org 1; dkim=pass header.d=x.example; SPF = SoftFail (comment; with semicolon) smtp.mailfrom = \"Bounce@Mail.Example.NET\"";
        let spf = parse_spf(value);
        assert_eq!(spf.status, SpfStatus::Fail);
        assert_eq!(spf.result.as_deref(), Some("softfail"));
        assert_eq!(spf.domain.as_deref(), Some("mail.example.net"));
    }

    #[test]
    fn none_results() {
        assert_eq!(parse_spf("mx.example.org; none").status, SpfStatus::None);
        assert_eq!(
            parse_spf("spf=none smtp.mailfrom=a.example").status,
            SpfStatus::None
        );
        assert_eq!(
            parse_spf("dkim=pass header.d=a.example").status,
            SpfStatus::None
        );
        assert_eq!(parse_spf("").status, SpfStatus::None);
        assert_eq!(parse_spf("spf=temperror").status, SpfStatus::Fail);
        // An unbalanced comment swallows the rest rather than failing.
        assert_eq!(parse_spf("(spf=pass").status, SpfStatus::None);
    }

    #[test]
    fn unfolding() {
        assert_eq!(unfold(b" a\r\n b\r\n\tc \r\n"), "a b c");
        assert_eq!(unfold(b"caf\xe9"), "caf\u{fffd}");
    }

    #[test]
    fn forwarding_signals() {
        assert_eq!(forward_prefix("FW: Expense report"), Some("FW:"));
        assert_eq!(forward_prefix("  fwd: x"), Some("fwd:"));
        assert_eq!(forward_prefix("Doorst: x"), Some("Doorst:"));
        assert_eq!(forward_prefix("Fwdx report"), None);
        assert_eq!(forward_prefix("Ü"), None);
        assert!(is_forwarding_header("Resent-From"));
        assert!(is_forwarding_header("X-Forwarded-To"));
        assert!(!is_forwarding_header("Auto-Submitted"));
        assert!(is_bulk_precedence(" Bulk "));
        assert!(!is_bulk_precedence("first-class"));
    }
}
