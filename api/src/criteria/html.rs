//! Finding the card `<script>` element in decoded HTML: a small tokenizer that follows the HTML
//! tokenizer's rules for tags, attributes, comments and raw-text elements, as far as locating
//! `<script type="application/adaptivecard+json">` / `application/ld+json` needs.

/// The `type` values (trimmed, ASCII case-insensitive) that carry actionable-message markup.
pub const ADAPTIVE_CARD_TYPE: &str = "application/adaptivecard+json";
/// The `type` of a legacy MessageCard script.
pub const LD_JSON_TYPE: &str = "application/ld+json";

/// A card script found in an HTML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardScript<'a> {
    /// The script's `type`, trimmed and lower-cased: [`ADAPTIVE_CARD_TYPE`] or [`LD_JSON_TYPE`].
    pub script_type: String,
    /// The raw text between the start tag and `</script` (no entity decoding: script content is
    /// raw text in HTML).
    pub content: &'a str,
    /// Byte offset of the `<script` start tag in the document.
    pub offset: usize,
}

/// Elements whose content is raw text or escapable raw text: a `<script` inside them is text.
const RAW_TEXT_ELEMENTS: &[&str] = &[
    "script", "style", "xmp", "iframe", "noembed", "noframes", "textarea", "title",
];

/// Returns the first `<script>` whose `type` is one of the card types, or `None`.
///
/// Tag and attribute names are case-insensitive; attribute values may be double-quoted,
/// single-quoted or unquoted; the first occurrence of a duplicated attribute wins; comments,
/// `<!...>`/`<?...>` declarations and end tags are skipped; the content of raw-text elements
/// (`style`, `title`, `textarea`, other scripts, ...) is not searched; a script ends at the first
/// `</script` followed by whitespace, `/` or `>` (or at the end of the document). Not handled:
/// the "script data escaped" states (`<!--` inside a script) and character references in the
/// `type` value, neither of which appears in real card emails.
pub fn find_card_script(html: &str) -> Option<CardScript<'_>> {
    let bytes = html.as_bytes();
    let mut pos = 0;
    while let Some(found) = find_byte(bytes, b'<', pos) {
        let lt = found;
        let after = lt + 1;
        match bytes.get(after) {
            Some(b'!') if bytes[after..].starts_with(b"!--") => {
                // `<!-->` and `<!--->` close at once, so search from the first dash.
                pos = find_seq(bytes, b"-->", after + 1).map_or(bytes.len(), |end| end + 3);
            }
            Some(b'!' | b'?') => {
                pos = find_byte(bytes, b'>', after).map_or(bytes.len(), |end| end + 1);
            }
            Some(b'/') => {
                pos = find_byte(bytes, b'>', after).map_or(bytes.len(), |end| end + 1);
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let tag = parse_start_tag(bytes, after)?;
                let name = tag.name.as_str();
                if name == "plaintext" {
                    // Everything after <plaintext> is text.
                    return None;
                }
                if !RAW_TEXT_ELEMENTS.contains(&name) {
                    pos = tag.end;
                    continue;
                }
                let (content_end, next) = find_end_tag(bytes, tag.end, name);
                if name == "script"
                    && let Some(script_type) = tag.attribute("type")
                {
                    let script_type = script_type
                        .trim_matches(is_html_whitespace)
                        .to_ascii_lowercase();
                    if script_type == ADAPTIVE_CARD_TYPE || script_type == LD_JSON_TYPE {
                        return Some(CardScript {
                            script_type,
                            content: html.get(tag.end..content_end)?,
                            offset: lt,
                        });
                    }
                }
                pos = next;
            }
            _ => pos = after,
        }
    }
    None
}

struct StartTag {
    name: String,
    attributes: Vec<(String, String)>,
    /// Offset just past the closing `>`.
    end: usize,
}

impl StartTag {
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn is_html_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

fn lossy_lower(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_ascii_lowercase()
}

/// Parses a start tag whose name begins at `start` (just after `<`). Returns `None` when the
/// document ends inside the tag: the HTML tokenizer drops such a tag and nothing follows it.
fn parse_start_tag(bytes: &[u8], start: usize) -> Option<StartTag> {
    let mut pos = start;
    while pos < bytes.len() && !is_ws(bytes[pos]) && bytes[pos] != b'/' && bytes[pos] != b'>' {
        pos += 1;
    }
    let name = lossy_lower(&bytes[start..pos]);
    let mut attributes: Vec<(String, String)> = Vec::new();
    loop {
        while pos < bytes.len() && (is_ws(bytes[pos]) || bytes[pos] == b'/') {
            pos += 1;
        }
        match bytes.get(pos) {
            None => return None,
            Some(b'>') => {
                return Some(StartTag {
                    name,
                    attributes,
                    end: pos + 1,
                });
            }
            Some(_) => {}
        }
        // The first character always belongs to the name, even `=` (tokenizer rule).
        let name_start = pos;
        pos += 1;
        while pos < bytes.len() && !is_ws(bytes[pos]) && !matches!(bytes[pos], b'/' | b'>' | b'=') {
            pos += 1;
        }
        let attr_name = lossy_lower(&bytes[name_start..pos]);
        while pos < bytes.len() && is_ws(bytes[pos]) {
            pos += 1;
        }
        let mut value = String::new();
        if bytes.get(pos) == Some(&b'=') {
            pos += 1;
            while pos < bytes.len() && is_ws(bytes[pos]) {
                pos += 1;
            }
            match bytes.get(pos) {
                Some(&quote @ (b'"' | b'\'')) => {
                    let close = find_byte(bytes, quote, pos + 1)?;
                    value = String::from_utf8_lossy(&bytes[pos + 1..close]).into_owned();
                    pos = close + 1;
                }
                Some(b'>') | None => {}
                Some(_) => {
                    let value_start = pos;
                    while pos < bytes.len() && !is_ws(bytes[pos]) && bytes[pos] != b'>' {
                        pos += 1;
                    }
                    value = String::from_utf8_lossy(&bytes[value_start..pos]).into_owned();
                }
            }
        }
        if !attributes.iter().any(|(n, _)| *n == attr_name) {
            attributes.push((attr_name, value));
        }
    }
}

/// Finds the end tag `</name` (case-insensitive, followed by whitespace, `/`, `>` or the end)
/// from `from`. Returns (end of the content, offset to resume scanning after the end tag).
fn find_end_tag(bytes: &[u8], from: usize, name: &str) -> (usize, usize) {
    let mut pos = from;
    while let Some(lt) = find_seq(bytes, b"</", pos) {
        let name_start = lt + 2;
        let name_end = name_start + name.len();
        let name_matches = bytes
            .get(name_start..name_end)
            .is_some_and(|candidate| candidate.eq_ignore_ascii_case(name.as_bytes()));
        let delimited = bytes
            .get(name_end)
            .is_none_or(|&b| is_ws(b) || b == b'/' || b == b'>');
        if name_matches && delimited {
            let resume = find_byte(bytes, b'>', name_end).map_or(bytes.len(), |gt| gt + 1);
            return (lt, resume);
        }
        pos = lt + 2;
    }
    (bytes.len(), bytes.len())
}

fn find_byte(bytes: &[u8], needle: u8, from: usize) -> Option<usize> {
    bytes
        .get(from..)?
        .iter()
        .position(|&b| b == needle)
        .map(|i| from + i)
}

fn find_seq(bytes: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let haystack = bytes.get(from..)?;
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|i| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(html: &str) -> Option<(String, &str)> {
        find_card_script(html).map(|s| (s.script_type, s.content))
    }

    #[test]
    fn finds_script_in_head() {
        let html = r#"<html><head><script type="application/adaptivecard+json">{"type":"AdaptiveCard"}</script></head></html>"#;
        assert_eq!(
            content(html),
            Some((ADAPTIVE_CARD_TYPE.to_owned(), r#"{"type":"AdaptiveCard"}"#))
        );
    }

    #[test]
    fn case_insensitive_names_and_quoting_styles() {
        let html = "<SCRIPT TYPE='  Application/LD+JSON '>{}</ScRiPt >";
        assert_eq!(content(html), Some((LD_JSON_TYPE.to_owned(), "{}")));
        let html = "<script data-x=1 type=application/adaptivecard+json>[1]</script>";
        assert_eq!(content(html), Some((ADAPTIVE_CARD_TYPE.to_owned(), "[1]")));
        let html = "<script\ntype = \"application/adaptivecard+json\"\n>x</script>";
        assert_eq!(content(html), Some((ADAPTIVE_CARD_TYPE.to_owned(), "x")));
    }

    #[test]
    fn skips_other_scripts_and_raw_text() {
        let html = concat!(
            "<title><script type=\"application/ld+json\">no</script></title>",
            "<!-- <script type=\"application/ld+json\">no</script> -->",
            "<style>p{} </style><script type=\"application/json\">{\"a\":\"</scripts>\"}</script>",
            "<script type=\"text/javascript\">var s = '<script type=\"application/ld+json\">';</script>",
            "<p data-x='<script type=\"application/ld+json\">'>text</p>",
            "<script type=\"application/ld+json\">yes</script>",
        );
        assert_eq!(content(html), Some((LD_JSON_TYPE.to_owned(), "yes")));
    }

    #[test]
    fn first_matching_script_wins_and_duplicate_attributes_keep_the_first() {
        let html = concat!(
            "<script type=\"application/json\" type=\"application/ld+json\">a</script>",
            "<script type=\"application/ld+json\">b</script>",
            "<script type=\"application/adaptivecard+json\">c</script>",
        );
        assert_eq!(content(html), Some((LD_JSON_TYPE.to_owned(), "b")));
    }

    #[test]
    fn end_tag_needs_a_delimiter_and_unterminated_script_runs_to_the_end() {
        let html = "<script type=\"application/ld+json\">a</scriptx>b</script>";
        assert_eq!(
            content(html),
            Some((LD_JSON_TYPE.to_owned(), "a</scriptx>b"))
        );
        let html = "<script type=\"application/ld+json\">{\"open\": true";
        assert_eq!(
            content(html),
            Some((LD_JSON_TYPE.to_owned(), "{\"open\": true"))
        );
    }

    #[test]
    fn nothing_found() {
        assert_eq!(content(""), None);
        assert_eq!(content("<p>no markup</p>"), None);
        assert_eq!(content("<script type=\"application/ld+json"), None);
        assert_eq!(content("a < b <<< <"), None);
        assert_eq!(
            content("<plaintext><script type=\"application/ld+json\">x</script>"),
            None
        );
        assert_eq!(
            content("<!--><script type=\"application/ld+json\">x</script>"),
            Some((LD_JSON_TYPE.to_owned(), "x"))
        );
    }

    #[test]
    fn non_ascii_text_around_the_script() {
        let html = "<p>Bücher – 注文</p><script type=\"application/ld+json\">{\"ü\":1}</script>";
        assert_eq!(content(html), Some((LD_JSON_TYPE.to_owned(), "{\"ü\":1}")));
    }
}
