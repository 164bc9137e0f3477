//! Limits on a GraphQL document checked before execution, beyond the depth and complexity
//! limits the schema enforces: size, nesting and tokens (before parsing), aliases, root fields,
//! and fields after fragment expansion
//! (so a fragment fan-out cannot multiply work unseen). A refusal costs one parse and no
//! resolver or database work.

use std::collections::HashMap;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned};

/// Largest accepted document, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024;
/// Most aliased fields in one operation, after fragment expansion.
pub const MAX_ALIASES: usize = 30;
/// Most root fields in one operation.
pub const MAX_ROOT_FIELDS: usize = 20;
/// Most fields in one operation after fragment expansion.
pub const MAX_EXPANDED_FIELDS: usize = 2_000;
/// Deepest fragment spread chain followed.
const MAX_SPREAD_DEPTH: usize = 32;
/// Deepest accepted nesting of `{`, `[` and `(` together, counted before parsing. The parser
/// limits selection sets itself but not list and object values, and turning a deeply nested
/// value into a document, or validating it, recurses once per level: a few hundred levels
/// overflow a worker thread's stack and abort the process.
pub const MAX_NESTING: usize = 64;
/// Most lexical tokens in a document (names, numbers, strings, punctuators; not whitespace,
/// commas or comments). The size limit alone lets a document hold some 30,000 one-byte tokens,
/// each of which the parser turns into values and positions; real operations have hundreds.
pub const MAX_TOKENS: usize = 4_000;

/// Why a document was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct LimitExceeded {
    pub code: &'static str,
    pub message: String,
}

impl LimitExceeded {
    fn new(code: &'static str, message: String) -> Self {
        Self { code, message }
    }

    /// Whether the document was refused for its size alone (HTTP answers 413 to that).
    pub fn is_too_large(&self) -> bool {
        self.code == QUERY_TOO_LARGE
    }
}

const QUERY_TOO_LARGE: &str = "QUERY_TOO_LARGE";

/// Checks the raw size; call before parsing.
pub fn check_size(query: &str) -> Result<(), LimitExceeded> {
    if query.len() > MAX_DOCUMENT_BYTES {
        return Err(LimitExceeded::new(
            QUERY_TOO_LARGE,
            format!(
                "the document has {} bytes; at most {MAX_DOCUMENT_BYTES} are accepted",
                query.len()
            ),
        ));
    }
    Ok(())
}

/// Checks how deeply brackets nest and how many tokens the document has, skipping strings,
/// block strings and comments the way the GraphQL grammar reads them; call before parsing. A
/// document the grammar reads differently fails to parse anyway, so the counts never have to be
/// exact for such a document.
pub fn check_lexical(query: &str) -> Result<(), LimitExceeded> {
    let bytes = query.as_bytes();
    let (mut depth, mut tokens, mut at) = (0usize, 0usize, 0usize);
    while let Some(&byte) = bytes.get(at) {
        // Whitespace, commas, byte-order marks and comments are not tokens.
        let ignored = matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | b',' | b'#')
            || bytes[at..].starts_with(BYTE_ORDER_MARK);
        if !ignored {
            tokens += 1;
            if tokens > MAX_TOKENS {
                return Err(LimitExceeded::new(
                    "TOO_MANY_TOKENS",
                    format!("the document has more than {MAX_TOKENS} tokens"),
                ));
            }
        }
        match byte {
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(LimitExceeded::new(
                        "NESTING_TOO_DEEP",
                        format!(
                            "brackets nest deeper than {MAX_NESTING} levels; pass deep values as variables"
                        ),
                    ));
                }
                at += 1;
            }
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                at += 1;
            }
            b'#' => {
                // A comment runs to the end of the line.
                at += bytes[at..]
                    .iter()
                    .position(|&b| b == b'\n' || b == b'\r')
                    .unwrap_or(bytes.len() - at);
            }
            b'"' if bytes[at..].starts_with(b"\"\"\"") => {
                // A block string ends at the first `"""` not escaped as `\"""`.
                at += 3;
                loop {
                    let rest = &bytes[at.min(bytes.len())..];
                    if rest.is_empty() || rest.starts_with(b"\"\"\"") {
                        at += 3;
                        break;
                    }
                    at += if rest.starts_with(b"\\\"\"\"") { 4 } else { 1 };
                }
            }
            b'"' => {
                // A string ends at an unescaped `"` or at a line break (where it is invalid).
                at += 1;
                while let Some(&b) = bytes.get(at) {
                    at += 1;
                    match b {
                        b'\\' => at += 1,
                        b'"' | b'\n' | b'\r' => break,
                        _ => {}
                    }
                }
            }
            b'.' if bytes[at..].starts_with(b"...") => at += 3,
            _ if bytes[at..].starts_with(BYTE_ORDER_MARK) => at += BYTE_ORDER_MARK.len(),
            _ if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-') => {
                // A name or a number (`-1.5e+3`): one token.
                at += bytes[at..]
                    .iter()
                    .position(|&b| !is_word_byte(b))
                    .unwrap_or(bytes.len() - at);
            }
            _ => at += 1,
        }
    }
    Ok(())
}

/// U+FEFF in UTF-8, which GraphQL reads as white space.
const BYTE_ORDER_MARK: &[u8] = "\u{feff}".as_bytes();

/// Bytes that continue a name or a number.
fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'+' | b'.')
}

/// Every check on a document that has not been parsed yet: size, nesting, then (when it parses;
/// the schema reports parse errors itself) the limits of [`check_document`]. Gives back the
/// parsed document, for the schema to reuse (WebSocket subscriptions).
pub fn check_query(query: &str) -> Result<Option<ExecutableDocument>, LimitExceeded> {
    check_size(query)?;
    check_lexical(query)?;
    match async_graphql::parser::parse_query(query) {
        Ok(document) => check_document(&document).map(|()| Some(document)),
        // The schema reports the syntax error when it parses the text again.
        Err(_) => Ok(None),
    }
}

/// Checks every operation of a parsed document.
pub fn check_document(document: &ExecutableDocument) -> Result<(), LimitExceeded> {
    let operations: Vec<&SelectionSet> = match &document.operations {
        DocumentOperations::Single(operation) => vec![&operation.node.selection_set.node],
        DocumentOperations::Multiple(operations) => operations
            .values()
            .map(|o| &o.node.selection_set.node)
            .collect(),
    };
    for selection_set in operations {
        let root_fields = selection_set.items.len();
        if root_fields > MAX_ROOT_FIELDS {
            return Err(LimitExceeded::new(
                "TOO_MANY_ROOT_FIELDS",
                format!(
                    "the operation selects {root_fields} root fields; at most {MAX_ROOT_FIELDS} are accepted"
                ),
            ));
        }
        let mut tally = Tally::default();
        tally.walk(selection_set, &document.fragments, 0)?;
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    fields: usize,
    aliases: usize,
}

impl Tally {
    fn walk(
        &mut self,
        selection_set: &SelectionSet,
        fragments: &HashMap<Name, Positioned<FragmentDefinition>>,
        spread_depth: usize,
    ) -> Result<(), LimitExceeded> {
        if spread_depth > MAX_SPREAD_DEPTH {
            return Err(LimitExceeded::new(
                "FRAGMENTS_TOO_DEEP",
                format!("fragment spreads nest deeper than {MAX_SPREAD_DEPTH}"),
            ));
        }
        for item in &selection_set.items {
            match &item.node {
                Selection::Field(field) => {
                    self.fields += 1;
                    if field.node.alias.is_some() {
                        self.aliases += 1;
                    }
                    if self.aliases > MAX_ALIASES {
                        return Err(LimitExceeded::new(
                            "TOO_MANY_ALIASES",
                            format!("the operation uses more than {MAX_ALIASES} aliases"),
                        ));
                    }
                    if self.fields > MAX_EXPANDED_FIELDS {
                        return Err(LimitExceeded::new(
                            "TOO_MANY_FIELDS",
                            format!(
                                "the operation selects more than {MAX_EXPANDED_FIELDS} fields once fragments are expanded"
                            ),
                        ));
                    }
                    self.walk(&field.node.selection_set.node, fragments, spread_depth)?;
                }
                Selection::InlineFragment(fragment) => {
                    self.walk(
                        &fragment.node.selection_set.node,
                        fragments,
                        spread_depth + 1,
                    )?;
                }
                Selection::FragmentSpread(spread) => {
                    // Unknown fragments are reported by validation.
                    if let Some(fragment) = fragments.get(&spread.node.fragment_name.node) {
                        self.walk(
                            &fragment.node.selection_set.node,
                            fragments,
                            spread_depth + 1,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn check(query: &str) -> Result<(), LimitExceeded> {
        check_document(&parse_query(query).expect("parses"))
    }

    #[test]
    fn fragment_fan_out_is_counted_after_expansion() {
        // Each level doubles the fields: 2^12 selections from a few hundred bytes.
        let mut query = String::from("query { viewer { ...F0 } }\n");
        for level in 0..12 {
            query.push_str(&format!(
                "fragment F{level} on User {{ ...F{} ...F{} }}\n",
                level + 1,
                level + 1
            ));
        }
        query.push_str("fragment F12 on User { id }\n");
        assert_eq!(check(&query).map_err(|e| e.code), Err("TOO_MANY_FIELDS"));
    }

    #[test]
    fn aliases_root_fields_and_size_are_capped() {
        let aliases: String = (0..31).map(|i| format!("a{i}: id ")).collect();
        assert_eq!(
            check(&format!("{{ viewer {{ {aliases} }} }}")).map_err(|e| e.code),
            Err("TOO_MANY_ALIASES")
        );
        let roots: String = (0..21).map(|_| "viewer { id } ").collect();
        assert_eq!(
            check(&format!("{{ {roots} }}")).map_err(|e| e.code),
            Err("TOO_MANY_ROOT_FIELDS")
        );
        assert!(check("{ viewer { id email } }").is_ok());
        assert_eq!(
            check_size(&"x".repeat(MAX_DOCUMENT_BYTES + 1)).map_err(|e| e.code),
            Err("QUERY_TOO_LARGE")
        );
    }

    #[test]
    fn nesting_is_counted_outside_strings_and_comments() {
        let deep = |n: usize| {
            format!(
                "{{ node(id: {}1{}) {{ id }} }}",
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert!(check_lexical(&deep(MAX_NESTING - 2)).is_ok());
        assert_eq!(
            check_lexical(&deep(MAX_NESTING)).map_err(|e| e.code),
            Err("NESTING_TOO_DEEP")
        );
        let objects = format!(
            "{{ node(id: {}1{}) {{ id }} }}",
            "{a:".repeat(300),
            "}".repeat(300)
        );
        assert!(check_lexical(&objects).is_err());
        // Brackets inside strings, block strings and comments do not count, whichever way.
        let noise = "[".repeat(200);
        for quiet in [
            format!("{{ viewer {{ id }} }} # {noise}"),
            format!("{{ node(id: \"{noise}\\\"\") {{ id }} }}"),
            format!("{{ node(id: \"\"\"{noise} \\\"\"\" \"\"\") {{ id }} }}"),
        ] {
            assert!(check_lexical(&quiet).is_ok(), "{quiet}");
        }
        // Closing brackets hidden in a string cannot offset real nesting.
        let hidden = format!(
            "{{ node(id: {}\"{}\"1) {{ id }} }}",
            "[".repeat(MAX_NESTING + 1),
            "]".repeat(MAX_NESTING + 1)
        );
        assert!(check_lexical(&hidden).is_err());
    }

    #[test]
    fn tokens_are_counted_outside_whitespace_commas_and_comments() {
        let of = |n: usize| format!("{{ viewer {{ {} }} }}", "id ".repeat(n));
        // `{ viewer {` and `} }` are five tokens.
        assert!(check_lexical(&of(MAX_TOKENS - 5)).is_ok());
        assert_eq!(
            check_lexical(&of(MAX_TOKENS - 4)).map_err(|e| e.code),
            Err("TOO_MANY_TOKENS")
        );
        // Commas, comments and whitespace are free; a string or a number is one token.
        let quiet = format!(
            "{{ node(id: \"{}\") {{ id }} }} # {}\n{}",
            "a b c ".repeat(2_000),
            "x ".repeat(MAX_TOKENS),
            ",\t\r\n".repeat(MAX_TOKENS)
        );
        assert!(check_lexical(&quiet).is_ok());
        let numbers = format!(
            "{{ node(id: [{}]) {{ id }} }}",
            "-1.5e+3 ".repeat(MAX_TOKENS)
        );
        assert_eq!(
            check_lexical(&numbers).map_err(|e| e.code),
            Err("TOO_MANY_TOKENS")
        );
        // Punctuators count one each, the spread as one.
        let spreads = format!("{{ viewer {{ {} }} }}", "...F ".repeat(MAX_TOKENS / 2));
        assert_eq!(
            check_lexical(&spreads).map_err(|e| e.code),
            Err("TOO_MANY_TOKENS")
        );
        let below = format!("{{ viewer {{ {} }} }}", "...F ".repeat(MAX_TOKENS / 2 - 4));
        assert!(check_lexical(&below).is_ok());
    }

    #[test]
    fn self_referencing_fragments_stop_at_the_spread_depth() {
        let query = "query { viewer { ...A } } fragment A on User { id ...A }";
        assert!(check(query).is_err());
    }
}
